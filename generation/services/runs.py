"""Runs: which items a stage may take, start, pause, resume, cancel, finish."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from generation.models import Job, LLMProfile, Run, Stage
from generation.services.common import ACTIVE_JOB_STATES, GenerationError
from generation.services.dispatch import jobs_dispatch_on_commit
from generation.services.profiles import profile_default_get
from medcot.lifecycle import Status
from medcot.models import Event, Item, ItemKind, Project


def _has_active_job(kind: str):
    return Exists(
        Job.objects.filter(
            item=OuterRef("pk"),
            kind=kind,
            state__in=ACTIVE_JOB_STATES,
            run__state__in=[Run.State.RUNNING, Run.State.PAUSED],
        )
    )


def eligible_items(*, project: Project, kind: str, profile: LLMProfile | None = None):
    """Items a new run of this kind would work on, skipping those another active run holds."""
    items = Item.objects.filter(project=project)
    if kind == Job.Kind.COT:
        items = items.filter(kind=ItemKind.SEED, status=Status.IMPORTED)
    elif kind == Job.Kind.EXPAND:
        items = items.filter(kind=ItemKind.SEED, status=Status.GENERATED)
    elif kind == Job.Kind.REANSWER:
        items = items.filter(status=Status.REANSWERING)
    elif kind == Job.Kind.JUDGE:
        from generation.judge import judge_eligible

        items = judge_eligible(items, profile=profile)
    else:
        raise GenerationError(f"Unknown job kind {kind!r}")
    return items.exclude(_has_active_job(kind)).order_by("id")


def _jobs_add(run: Run, kind: str, item_ids: list[int], payload: dict | None = None) -> list[int]:
    jobs = [
        Job(
            run=run,
            item_id=item_id,
            kind=kind,
            key=f"{run.pk}:{kind}:{item_id}",
            payload=payload or {},
        )
        for item_id in item_ids
    ]
    Job.objects.bulk_create(jobs, batch_size=2000, ignore_conflicts=True)
    keys = [job.key for job in jobs]
    return list(
        Job.objects.filter(key__in=keys, state=Job.State.QUEUED).values_list("pk", flat=True)
    )


def run_start(
    *,
    project: Project,
    stage: str,
    actor=None,
    profile: LLMProfile | None = None,
    limit: int | None = None,
    hands_off: bool | None = None,
) -> Run:
    """Start a batch: one job per eligible item, dispatched to the LLM workers after commit.

    `stage="all"` is hands-off: CoTs, then each seed's expansion as soon as its CoT exists,
    and re-answering of whatever the reviewers pass on while the run is active."""
    if stage not in Stage.values:
        raise GenerationError(f"Unknown stage {stage!r}; choose one of {', '.join(Stage.values)}")
    if limit is not None and limit < 1:
        raise GenerationError(_("The limit must be a positive number of items"))
    profile = profile or profile_default_get()
    if not profile.enabled:
        raise GenerationError(
            _("The endpoint %(name)s is disabled; enable it or choose another.")
            % {"name": profile.name}
        )
    kinds = [Job.Kind.COT, Job.Kind.EXPAND, Job.Kind.REANSWER] if stage == Stage.ALL else [stage]
    with transaction.atomic():
        run = Run.objects.create(
            project=project,
            profile=profile,
            stage=stage,
            hands_off=stage == Stage.ALL if hands_off is None else hands_off,
            limit=limit,
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        job_ids: list[int] = []
        for kind in kinds:
            ids = list(
                eligible_items(project=project, kind=kind, profile=profile).values_list(
                    "pk", flat=True
                )
            )
            if limit is not None:
                ids = ids[: max(0, limit - len(job_ids))]
            job_ids += _jobs_add(run, kind, ids)
        Event.objects.create(
            project=project,
            actor=run.created_by,
            kind="llm_run_started",
            data={"run": run.pk, "stage": stage, "jobs": len(job_ids), "profile": profile.name},
        )
        if not job_ids:
            run.message = eligibility_holders(project=project, kinds=kinds)
            fields = ["message"]
            if not run.hands_off:
                run.state = Run.State.DONE
                run.finished_at = timezone.now()
                fields += ["state", "finished_at"]
            run.save(update_fields=fields)
        jobs_dispatch_on_commit(job_ids)
    return run


def _run_event(run: Run, kind: str, actor=None, reason: str = "") -> None:
    Event.objects.create(
        project_id=run.project_id,
        actor=actor if actor is not None and actor.is_authenticated else None,
        kind=kind,
        reason=reason,
        data={"run": run.pk},
    )


def run_pause(*, run: Run, actor=None, message: str = "") -> Run:
    with transaction.atomic():
        changed = Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).update(
            state=Run.State.PAUSED, message=message
        )
        if changed:
            _run_event(run, "llm_run_paused", actor, message)
    run.refresh_from_db()
    return run


def run_resume(*, run: Run, actor=None) -> Run:
    with transaction.atomic():
        changed = Run.objects.filter(pk=run.pk, state=Run.State.PAUSED).update(
            state=Run.State.RUNNING, message=""
        )
        if changed:
            _run_event(run, "llm_run_resumed", actor)
            queued = Job.objects.filter(run=run, state=Job.State.QUEUED)
            ids = list(queued.values_list("pk", flat=True))
            # Dispatched again below; until then the sweep may pick them up.
            queued.update(dispatched_at=None)
            jobs_dispatch_on_commit(ids)
    run.refresh_from_db()
    return run


def run_cancel(*, run: Run, actor=None) -> Run:
    """Stop a run: queued jobs are cancelled; calls already in flight finish and are kept.

    Every item the run held goes back where a later run picks it up: a seed whose CoT was
    being drafted returns to `imported` (when its call ends, if one is in flight), a seed
    awaiting expansion stays `generated`, an item awaiting re-answering stays `reanswering`.
    The run's message says how many of each, so nobody is left wondering where they went."""
    with transaction.atomic():
        changed = Run.objects.filter(
            pk=run.pk, state__in=[Run.State.RUNNING, Run.State.PAUSED]
        ).update(state=Run.State.CANCELLED, finished_at=timezone.now())
        if changed:
            queued = Job.objects.filter(run=run, state=Job.State.QUEUED)
            held = dict(
                Item.objects.filter(pk__in=queued.values("item_id"))
                .order_by()
                .values_list("status")
                .annotate(n=Count("id"))
            )
            in_flight = Job.objects.filter(run=run, state=Job.State.RUNNING).count()
            queued.update(state=Job.State.CANCELLED)
            message = _cancel_message(held, in_flight)
            Run.objects.filter(pk=run.pk).update(message=message)
            _run_event(run, "llm_run_cancelled", actor, message)
    run.refresh_from_db()
    return run


def _cancel_message(held: dict[str, int], in_flight: int) -> str:
    parts = []
    waiting = {
        Status.IMPORTED: _("%(n)s seeds await a CoT"),
        Status.GENERATED: _("%(n)s seeds await expansion"),
        Status.REANSWERING: _("%(n)s items await re-answering"),
    }
    for status, text in waiting.items():
        if held.get(status):
            parts.append(text % {"n": held[status]})
    other = sum(n for status, n in held.items() if status not in waiting)
    if other:
        parts.append(_("%(n)s items had moved on already") % {"n": other})
    if in_flight:
        parts.append(
            _(
                "%(n)s jobs already started finish their current call; their items then move "
                "on, or return the same way"
            )
            % {"n": in_flight}
        )
    total = sum(held.values())
    if not parts:
        return _("Cancelled. No item was waiting in this run.")
    return _("Cancelled; %(total)s items returned for a later run to pick up: %(parts)s.") % {
        "total": total,
        "parts": "; ".join(parts),
    }


def eligibility_holders(*, project: Project, kinds: list[str]) -> str:
    """Why a run of these kinds found nothing to do, in words: which active runs hold the
    items it would have taken, and how many are in `error` waiting for a retry."""
    sources = {
        Job.Kind.COT: [Status.IMPORTED, Status.GENERATING],
        Job.Kind.EXPAND: [Status.GENERATED],
        Job.Kind.REANSWER: [Status.REANSWERING],
    }
    statuses = [status for kind in kinds for status in sources.get(kind, [])]
    holders = (
        Job.objects.filter(
            run__project=project,
            run__state__in=[Run.State.RUNNING, Run.State.PAUSED],
            state__in=ACTIVE_JOB_STATES,
            kind__in=kinds,
            item__status__in=statuses,
        )
        .order_by("run_id")
        .values_list("run_id", "run__state")
        .annotate(n=Count("item_id", distinct=True))
    )
    parts = [
        _("%(n)s items are held by run #%(run)s (%(state)s)")
        % {"n": n, "run": run_id, "state": Run.State(state).label}
        for run_id, state, n in holders
    ]
    errors = Item.objects.filter(project=project, status=Status.ERROR).count()
    if errors:
        parts.append(
            _("%(n)s items are in error: retry them from their run's page") % {"n": errors}
        )
    if not parts:
        return _("Nothing was eligible: no item of this project is at a stage this run works on.")
    return _("Nothing was eligible: %(parts)s.") % {"parts": "; ".join(parts)}


def _run_maybe_finish(run_id: int) -> None:
    """Close a run whose last job just ended. The run's row is locked first: two last jobs
    ending at the same moment would otherwise each see the other still active (neither has
    committed) and leave the run open for ever."""
    with transaction.atomic(savepoint=False):
        run = (
            Run.objects.select_for_update(no_key=True)
            .filter(pk=run_id)
            .values("hands_off", "state")
            .first()
        )
        # A hands-off run stays open for the items reviewers pass on later.
        if run is None or run["hands_off"] or run["state"] != Run.State.RUNNING:
            return
        if not Job.objects.filter(run_id=run_id, state__in=ACTIVE_JOB_STATES).exists():
            Run.objects.filter(pk=run_id, state=Run.State.RUNNING).update(
                state=Run.State.DONE, finished_at=timezone.now()
            )


def runs_close_finished() -> int:
    """Close running runs (not hands-off) that have no queued or running job left: a safety
    net for the housekeeping sweep. Returns how many."""
    idle = Run.objects.filter(state=Run.State.RUNNING, hands_off=False).exclude(
        Exists(Job.objects.filter(run=OuterRef("pk"), state__in=ACTIVE_JOB_STATES))
    )
    return idle.update(state=Run.State.DONE, finished_at=timezone.now())
