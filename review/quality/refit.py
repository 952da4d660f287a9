"""The periodic refit: read every human verdict of a project, fit Dawid–Skene, store a posterior
per item and an estimate per reviewer.

A "task" of the model is one content version: a first-pass verdict (all three criteria 1 or
not), a consensus vote (agrees with the key and the phrasing or not) and a panel decision
(accept or not) are binary verdicts on the version they were given on. Control answers are
verdicts on versions whose truth is known, which anchors the reviewers' confusion matrices.
An item's posterior is that of its current version.

It runs in the `quality_refit` Celery task (beat schedule in settings), never in a request, and
is cheap when nothing changed: the fit is skipped while the verdict tables' watermark is the
one of the last fit, and otherwise starts from the last estimates (warm start), which takes
fewer EM iterations than starting from majority vote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from medcot.models import Item, ItemVersion, Project
from review.models import ConsensusVote, FirstPassReview, FirstPassState, PanelDecision
from review.quality.aggregation import FIT_OPTIONS, dawid_skene, sensitivity_specificity
from review.quality.models import (
    ControlAnswer,
    ControlItem,
    QualityFit,
    ReviewerEstimate,
    VerdictPosterior,
)

# A stored posterior is rewritten only when it moved by more than this (or its count changed).
POSTERIOR_STEP = 1e-4


@dataclass
class Labels:
    versions: np.ndarray  # the version id each label is on
    workers: np.ndarray  # user ids
    labels: np.ndarray  # 1 = valid
    known: dict[int, int]  # version id -> true label (controls)


def _fetch(sql: str, params: list) -> np.ndarray:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def verdict_labels(*, project_id: int) -> Labels:
    """Every binary human verdict of the project as (version, person, label) arrays. Raw SQL:
    three statements returning ~100,000 integer triples at 36,210 items; the ORM's model
    instances would cost more than the fit."""
    item_t = Item._meta.db_table
    control_t = ControlItem._meta.db_table
    not_control = f"NOT EXISTS (SELECT 1 FROM {control_t} q WHERE q.item_id = i.id)"  # noqa: S608
    first = _fetch(
        f"SELECT r.version_id, r.reviewer_id, "  # noqa: S608 — table names from model metadata
        f"CASE WHEN r.relevance AND r.correctness AND r.sufficiency THEN 1 ELSE 0 END "
        f"FROM {FirstPassReview._meta.db_table} r JOIN {item_t} i ON i.id = r.item_id "
        f"WHERE i.project_id = %s AND r.state <> %s AND {not_control}",
        [project_id, FirstPassState.UNDONE],
    )
    votes = _fetch(
        f"SELECT c.version_id, c.expert_id, "  # noqa: S608
        f"CASE WHEN c.answer = v.answer AND c.approve_phrasing THEN 1 ELSE 0 END "
        f"FROM {ConsensusVote._meta.db_table} c JOIN {item_t} i ON i.id = c.item_id "
        f"JOIN {ItemVersion._meta.db_table} v ON v.id = c.version_id "
        f"WHERE i.project_id = %s AND {not_control}",
        [project_id],
    )
    panel = _fetch(
        f"SELECT d.version_id, d.expert_id, "  # noqa: S608
        f"CASE WHEN d.decision = 'accept' THEN 1 ELSE 0 END "
        f"FROM {PanelDecision._meta.db_table} d JOIN {item_t} i ON i.id = d.item_id "
        f"WHERE i.project_id = %s",
        [project_id],
    )
    controls = _fetch(
        f"SELECT i.current_version_id, a.reviewer_id, "  # noqa: S608
        f"CASE WHEN a.given_valid THEN 1 ELSE 0 END "
        f"FROM {ControlAnswer._meta.db_table} a JOIN {control_t} q ON q.id = a.control_id "
        f"JOIN {item_t} i ON i.id = q.item_id WHERE q.project_id = %s",
        [project_id],
    )
    known = dict(
        ControlItem.objects.filter(project_id=project_id).values_list(
            "item__current_version_id", "expected_valid"
        )
    )
    rows = np.concatenate([first, votes, panel, controls])
    return Labels(
        versions=rows[:, 0],
        workers=rows[:, 1],
        labels=rows[:, 2],
        known={int(v): int(bool(t)) for v, t in known.items() if v is not None},
    )


def _watermark(project_id: int) -> str:
    parts = []
    for model, path in (
        (FirstPassReview, "item__project_id"),
        (ConsensusVote, "item__project_id"),
        (PanelDecision, "item__project_id"),
        (ControlAnswer, "control__project_id"),
    ):
        agg = model.objects.filter(**{path: project_id}).aggregate(n=Count("id"), top=Max("id"))
        parts.append(f"{agg['n']}.{agg['top'] or 0}")
    undone = FirstPassReview.objects.filter(
        item__project_id=project_id, state=FirstPassState.UNDONE
    ).count()
    return ":".join(parts) + f":{undone}"


def _warm_start(project_id: int, worker_ids) -> np.ndarray | None:
    """Confusion matrices from the reviewers' last estimates, to start the fit from; None when
    there are none (a reviewer without one is all zeros: started from the majority vote)."""
    previous = dict(
        (r, (s, p))
        for r, s, p in ReviewerEstimate.objects.filter(project_id=project_id).values_list(
            "reviewer_id", "sensitivity", "specificity"
        )
    )
    if not previous:
        return None
    initial = np.zeros((worker_ids.size, 2, 2))
    for w, uid in enumerate(worker_ids):
        if int(uid) in previous:
            sens, spec = previous[int(uid)]
            initial[w] = [[spec, 1 - sens], [1 - spec, sens]]
    return initial


def quality_refit(*, project_id: int, force: bool = False, warm: bool = True) -> QualityFit | None:
    """Refit one project. Returns the fit's record, or None when nothing changed since the last
    one (unless `force`). Idempotent: running it twice writes the same figures."""
    started = time.perf_counter()
    mark = _watermark(project_id)
    last = QualityFit.objects.filter(project_id=project_id).first()
    if not force and last is not None and last.watermark == mark:
        return None
    data = verdict_labels(project_id=project_id)
    task_ids, task_index = np.unique(data.versions, return_inverse=True)
    worker_ids, worker_index = np.unique(data.workers, return_inverse=True)
    position = {int(v): i for i, v in enumerate(task_ids)}
    known = {position[v]: label for v, label in data.known.items() if v in position}
    initial = _warm_start(project_id, worker_ids) if warm and worker_ids.size else None
    result = dawid_skene(
        task_index,
        worker_index,
        data.labels,
        n_items=task_ids.size,
        n_workers=worker_ids.size,
        known=known,
        initial_confusion=initial,
        **FIT_OPTIONS,
    )
    counts = np.bincount(task_index, minlength=task_ids.size)
    now = timezone.now()
    _store(project_id=project_id, task_ids=task_ids, result=result, counts=counts, now=now)
    sens, spec = sensitivity_specificity(result.confusion)
    per_worker = np.bincount(worker_index, minlength=worker_ids.size)
    with transaction.atomic():
        ReviewerEstimate.objects.bulk_create(
            [
                ReviewerEstimate(
                    project_id=project_id,
                    reviewer_id=int(uid),
                    sensitivity=float(sens[w]),
                    specificity=float(spec[w]),
                    n_labels=int(per_worker[w]),
                    fitted_at=now,
                )
                for w, uid in enumerate(worker_ids)
            ],
            update_conflicts=True,
            unique_fields=["project", "reviewer"],
            update_fields=["sensitivity", "specificity", "n_labels", "fitted_at"],
        )
        return QualityFit.objects.create(
            project_id=project_id,
            watermark=mark,
            n_items=int(task_ids.size),
            n_labels=int(data.labels.size),
            n_workers=int(worker_ids.size),
            iterations=result.iterations,
            seconds=time.perf_counter() - started,
        )


def _posteriors_upsert_postgresql(rows: list, *, now) -> None:
    """One statement over four arrays: 36,210 rows in well under a second, where
    bulk_create's batched upsert took ~5 s (bench/reviewer_quality.py)."""
    table = VerdictPosterior._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (item_id, version_id, p_valid, n_verdicts, fitted_at) "  # noqa: S608
            "SELECT u.i, u.v, u.p, u.n, %s FROM unnest(%s::bigint[], %s::bigint[], "
            "%s::float8[], %s::int[]) AS u(i, v, p, n) "
            "ON CONFLICT (item_id) DO UPDATE SET version_id = excluded.version_id, "
            "p_valid = excluded.p_valid, n_verdicts = excluded.n_verdicts, "
            "fitted_at = excluded.fitted_at",
            [
                now,
                [r.item_id for r in rows],
                [r.version_id for r in rows],
                [r.p_valid for r in rows],
                [r.n_verdicts for r in rows],
            ],
        )


def _store(*, project_id: int, task_ids, result, counts, now) -> int:
    """Upsert the posterior of every item whose current version was judged, writing only the
    rows that changed."""
    current = dict(
        Item.objects.filter(project_id=project_id, current_version_id__in=task_ids.tolist())
        .exclude(control__isnull=False)
        .values_list("current_version_id", "pk")
    )
    stored = {
        item_id: (version_id, p, n)
        for item_id, version_id, p, n in VerdictPosterior.objects.filter(
            item__project_id=project_id
        ).values_list("item_id", "version_id", "p_valid", "n_verdicts")
    }
    rows = []
    for t, version_id in enumerate(task_ids.tolist()):
        item_id = current.get(version_id)
        if item_id is None:
            continue
        p = float(result.posteriors[t, 1])
        n = int(counts[t])
        old = stored.get(item_id)
        if old and old[0] == version_id and old[2] == n and abs(old[1] - p) <= POSTERIOR_STEP:
            continue
        rows.append(
            VerdictPosterior(
                item_id=item_id,
                version_id=version_id,
                p_valid=min(1.0, max(0.0, p)),
                n_verdicts=min(n, 32767),
                fitted_at=now,
            )
        )
    if connection.vendor == "postgresql" and rows:
        _posteriors_upsert_postgresql(rows, now=now)
        return len(rows)
    VerdictPosterior.objects.bulk_create(
        rows,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=["version", "p_valid", "n_verdicts", "fitted_at"],
    )
    return len(rows)


def quality_refit_all(*, force: bool = False) -> int:
    """Refit every project whose verdicts changed. Returns how many were refitted."""
    done = 0
    for project_id in Project.objects.values_list("pk", flat=True):
        done += quality_refit(project_id=project_id, force=force) is not None
    return done
