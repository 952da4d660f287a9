"""Reads of review/quality: reviewer reliability, posteriors, controls, alerts."""

from __future__ import annotations

import statistics
from collections import defaultdict

from django.db.models import Count, Q

from medcot.models import Project
from review.models import ConsensusVote, FirstPassReview, FirstPassState, PanelDecision, Profile
from review.quality.aggregation import wilson_interval
from review.quality.double import first_pass_kappa
from review.quality.models import (
    ControlAnswer,
    ControlItem,
    QualityFit,
    ReliabilityAlert,
    ReviewerEstimate,
    VerdictPosterior,
)
from review.quality.refit import verdict_labels

SORT_KEYS = (
    "name",
    "controls",
    "accuracy",
    "sensitivity",
    "specificity",
    "agreement",
    "median_seconds",
    "fast_share",
    "per_day",
    "verdicts",
)


def _peer_agreement(project_id: int) -> dict[int, tuple[int, int]]:
    """Per person: (labels agreeing with another person's label on the same version, pairs).
    Every pair of verdicts on one version counts once for each of the two people."""
    data = verdict_labels(project_id=project_id)
    by_version: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for version, worker, label in zip(
        data.versions.tolist(), data.workers.tolist(), data.labels.tolist(), strict=True
    ):
        if version not in data.known:
            by_version[version].append((worker, label))
    agree: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for labels in by_version.values():
        if len(labels) < 2:
            continue
        for i, (a, la) in enumerate(labels):
            for b, lb in labels[i + 1 :]:
                if a == b:
                    continue
                for person in (a, b):
                    agree[person][0] += la == lb
                    agree[person][1] += 1
    return {person: (v[0], v[1]) for person, v in agree.items()}


def _judgements(project_id: int) -> tuple[list, list, list]:
    """The project's first-pass verdicts (not undone), consensus votes and panel decisions,
    as (person, seconds, …, when) tuples."""
    reviews = list(
        FirstPassReview.objects.filter(item__project_id=project_id)
        .exclude(state=FirstPassState.UNDONE)
        .values_list("reviewer_id", "seconds_on_item", "outcome", "created_at")
    )
    votes = list(
        ConsensusVote.objects.filter(item__project_id=project_id).values_list(
            "expert_id", "created_at"
        )
    )
    decisions = list(
        PanelDecision.objects.filter(item__project_id=project_id).values_list(
            "expert_id", "seconds_on_item", "created_at"
        )
    )
    return reviews, votes, decisions


def _activity(reviews: list, votes: list, decisions: list) -> tuple[dict, dict, dict, dict]:
    """Per person: seconds per verdict, seconds per pass, the days they worked, and how many
    verdicts, votes and decisions they gave."""
    seconds: dict[int, list[int]] = defaultdict(list)
    passes: dict[int, list[int]] = defaultdict(list)
    days: dict[int, set] = defaultdict(set)
    volume: dict[int, int] = defaultdict(int)
    for person, secs, outcome, at in reviews:
        seconds[person].append(secs)
        if outcome == "pass":
            passes[person].append(secs)
        days[person].add(at.date())
        volume[person] += 1
    for person, at in votes:
        days[person].add(at.date())
        volume[person] += 1
    for person, secs, at in decisions:
        seconds[person].append(secs)
        days[person].add(at.date())
        volume[person] += 1
    return seconds, passes, days, volume


def _rows_sorted(rows: list[dict], *, sort: str, descending: bool) -> list[dict]:
    """The rows by `sort` (a SORT_KEYS column, else the name); rows without a figure go last
    whichever the direction."""
    key = sort if sort in SORT_KEYS else "name"

    def order(row):
        value = row[key]
        return (value is None, value if value is not None else 0)

    rows.sort(key=order, reverse=False)
    if descending:
        present = [r for r in rows if r[key] is not None]
        rows = present[::-1] + [r for r in rows if r[key] is None]
    return rows


def reliability_rows(*, project: Project, sort: str = "name", descending: bool = False) -> list:
    """One row per person with a verdict or a control answer in the project."""
    project_id = project.pk
    reviews, votes, decisions = _judgements(project_id)
    control_counts = {
        row["reviewer_id"]: (row["n"], row["k"])
        for row in ControlAnswer.objects.filter(control__project_id=project_id)
        .values("reviewer_id")
        .annotate(n=Count("id"), k=Count("id", filter=Q(correct=True)))
    }
    estimates = {e.reviewer_id: e for e in ReviewerEstimate.objects.filter(project_id=project_id)}
    open_alerts = set(
        ReliabilityAlert.objects.filter(project_id=project_id, closed_at__isnull=True).values_list(
            "reviewer_id", flat=True
        )
    )
    peers = _peer_agreement(project_id)

    seconds, passes, days, volume = _activity(reviews, votes, decisions)
    people = set(volume) | set(control_counts)
    profiles = {
        p.user_id: p for p in Profile.objects.filter(user_id__in=people).select_related("user")
    }
    rows = []
    for person in people:
        n, k = control_counts.get(person, (0, 0))
        low, high = wilson_interval(k, n)
        estimate = estimates.get(person)
        agree, pairs = peers.get(person, (0, 0))
        profile = profiles.get(person)
        quick = passes.get(person, [])
        rows.append(
            {
                "user_id": person,
                "name": (profile and (profile.display_name or profile.user.get_username())) or "",
                "username": profile.user.get_username() if profile else str(person),
                "pseudonym": profile.pseudonym if profile else f"x-{person}",
                "controls": n,
                "controls_correct": k,
                "accuracy": (k / n) if n else None,
                "accuracy_low": low if n else None,
                "accuracy_high": high if n else None,
                "sensitivity": estimate.sensitivity if estimate else None,
                "specificity": estimate.specificity if estimate else None,
                "agreement": (agree / pairs) if pairs else None,
                "agreement_pairs": pairs,
                "median_seconds": statistics.median(seconds[person]) if seconds[person] else None,
                "fast_share": (
                    sum(1 for s in quick if s < project.min_pass_seconds) / len(quick)
                    if quick
                    else None
                ),
                "per_day": (volume[person] / len(days[person])) if days[person] else None,
                "verdicts": volume[person],
                "alert": person in open_alerts,
            }
        )
    return _rows_sorted(rows, sort=sort, descending=descending)


def quality_summary(*, project: Project) -> dict:
    """The project's quality figures at a glance (page header, API, dataset card)."""
    fit = QualityFit.objects.filter(project=project).first()
    kappa = first_pass_kappa(project_id=project.pk)
    answers = ControlAnswer.objects.filter(control__project=project)
    n = answers.count()
    k = answers.filter(correct=True).count()
    low, high = wilson_interval(k, n)
    return {
        "fit": fit,
        "first_pass_kappa": kappa,
        "controls_active": ControlItem.objects.filter(project=project, active=True).count(),
        "control_answers": n,
        "control_accuracy": (k / n) if n else None,
        "control_low": low if n else None,
        "control_high": high if n else None,
        "posteriors": VerdictPosterior.objects.filter(item__project=project).count(),
    }


def alerts_open(*, project: Project | None = None):
    qs = ReliabilityAlert.objects.filter(closed_at__isnull=True).select_related(
        "reviewer", "project"
    )
    if project is not None:
        qs = qs.filter(project=project)
    return qs


def posterior_for_item(*, item):
    return VerdictPosterior.objects.filter(item=item).first()
