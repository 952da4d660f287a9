"""Writes on the generation side: profiles, runs and jobs, and the results of model calls.

Every function here is short database work. The model calls happen in `generation.pipeline`,
between these functions, with no database connection held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.exceptions import OperationalError

from generation import dedup
from generation.client import ProfileSnapshot, TryRecord
from generation.models import (
    Job,
    LLMCall,
    LLMProfile,
    NearDuplicateBand,
    ReanswerAttempt,
    Run,
    Stage,
)
from medcot.bulk import allocate_ids, insert_objects, is_postgres
from medcot.lifecycle import StaleStatus, Status, transition, transition_many
from medcot.models import OPTION_LABELS, AuthorKind, Event, Item, ItemKind, ItemVersion, Project
from medcot.services import item_version_create

log = logging.getLogger(__name__)

ACTIVE_JOB_STATES = (Job.State.QUEUED, Job.State.RUNNING)
# A reply longer than the family needs is read this far past what is needed, to make up for
# near-duplicates dropped on the way; the rest is ignored.
MAX_DROPPED_PER_REPLY = 20
# Unparseable replies do not count as strikes, but an item whose replies can never be parsed
# must not loop for ever: beyond this many extra tries it goes to `error`.
UNPARSED_ALLOWANCE = 3


class GenerationError(Exception):
    """A request that cannot be carried out (bad state or bad input), with a clear message."""


# -- profiles -------------------------------------------------------------------------------


def profile_default_get() -> LLMProfile:
    """The default profile, created from the environment on first use: MEDCOT_LLM_BASE_URL /
    MEDCOT_LLM_MODEL / MEDCOT_LLM_API_KEY, or the built-in simulator when no LLM is set."""
    profile = LLMProfile.objects.filter(is_default=True).first()
    if profile is not None:
        return profile
    if settings.MEDCOT_LLM_BASE_URL:
        fields = {
            "name": "default",
            "base_url": settings.MEDCOT_LLM_BASE_URL,
            "model": settings.MEDCOT_LLM_MODEL or "deepseek-reasoner",
            "api_key_env": settings.MEDCOT_LLM_API_KEY_ENV,
            "simulated": False,
        }
    else:
        fields = {
            "name": "simulator",
            "base_url": settings.MEDCOT_SIMULATOR_URL,
            "model": "sim-medcot",
            "api_key_env": "",
            "simulated": True,
        }
    fields.update(
        max_in_flight=settings.MEDCOT_LLM_MAX_IN_FLIGHT,
        timeout_seconds=settings.MEDCOT_LLM_TIMEOUT,
        is_default=True,
    )
    try:
        with transaction.atomic():
            return LLMProfile.objects.create(**fields)
    except IntegrityError:
        return LLMProfile.objects.get(is_default=True)


# -- runs and jobs --------------------------------------------------------------------------


DISPATCH_CHUNK = 500


def _dispatch(job_ids: list[int]) -> None:
    """Send one message per job, and mark the jobs dispatched once their messages are out.
    A process that dies in between leaves a job queued and unmarked: `jobs_redispatch_lost`
    sends it again (a second message for a job is harmless, its claim turns it away)."""
    from generation.tasks import job_execute_task

    for start in range(0, len(job_ids), DISPATCH_CHUNK):
        chunk = job_ids[start : start + DISPATCH_CHUNK]
        try:
            for job_id in chunk:
                job_execute_task.delay(job_id)
        except OperationalError as exc:
            # The broker is unreachable (after Celery's own publish retries). The jobs stay
            # queued and unmarked, and the sweep sends them once it is back.
            log.warning("Could not dispatch %d LLM job(s) now: %s", len(job_ids) - start, exc)
            return
        Job.objects.filter(pk__in=chunk, dispatched_at__isnull=True).update(
            dispatched_at=timezone.now()
        )


def jobs_dispatch_on_commit(job_ids: list[int]) -> None:
    """Dispatch the jobs once the transaction that queued them commits."""
    if job_ids:
        transaction.on_commit(partial(_dispatch, list(job_ids)))


def jobs_redispatch_lost(*, grace_seconds: float | None = None, limit: int = 10_000) -> int:
    """Send again the messages of queued jobs that never reached the broker: their process
    died between committing them and dispatching them. Only jobs of running runs, queued
    more than `grace_seconds` ago (the time a dispatch may take). Returns how many."""
    if grace_seconds is None:
        grace_seconds = settings.MEDCOT_JOB_DISPATCH_GRACE
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    ids = list(
        Job.objects.filter(
            state=Job.State.QUEUED,
            dispatched_at__isnull=True,
            updated_at__lt=cutoff,
            run__state=Run.State.RUNNING,
        )
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
    if ids:
        log.warning("Re-dispatching %d queued job(s) whose dispatch was lost", len(ids))
        _dispatch(ids)
    return len(ids)


def _has_active_job(kind: str):
    return Exists(
        Job.objects.filter(
            item=OuterRef("pk"),
            kind=kind,
            state__in=ACTIVE_JOB_STATES,
            run__state__in=[Run.State.RUNNING, Run.State.PAUSED],
        )
    )


def eligible_items(*, project: Project, kind: str):
    """Items a new run of this kind would work on, skipping those another active run holds."""
    items = Item.objects.filter(project=project)
    if kind == Job.Kind.COT:
        items = items.filter(kind=ItemKind.SEED, status=Status.IMPORTED)
    elif kind == Job.Kind.EXPAND:
        items = items.filter(kind=ItemKind.SEED, status=Status.GENERATED)
    elif kind == Job.Kind.REANSWER:
        items = items.filter(status=Status.REANSWERING)
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
            ids = list(eligible_items(project=project, kind=kind).values_list("pk", flat=True))
            if limit is not None:
                ids = ids[: max(0, limit - len(job_ids))]
            job_ids += _jobs_add(run, kind, ids)
        Event.objects.create(
            project=project,
            actor=run.created_by,
            kind="llm_run_started",
            data={"run": run.pk, "stage": stage, "jobs": len(job_ids), "profile": profile.name},
        )
        if not job_ids and not run.hands_off:
            run.state = Run.State.DONE
            run.finished_at = timezone.now()
            run.save(update_fields=["state", "finished_at"])
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
    """Stop a run: queued jobs are cancelled; calls already in flight finish and are kept."""
    with transaction.atomic():
        changed = Run.objects.filter(
            pk=run.pk, state__in=[Run.State.RUNNING, Run.State.PAUSED]
        ).update(state=Run.State.CANCELLED, finished_at=timezone.now())
        if changed:
            Job.objects.filter(run=run, state=Job.State.QUEUED).update(state=Job.State.CANCELLED)
            _run_event(run, "llm_run_cancelled", actor)
    run.refresh_from_db()
    return run


def _run_maybe_finish(run_id: int) -> None:
    """Close a run whose last job just ended. The run's row is locked first: two last jobs
    ending at the same moment would otherwise each see the other still active (neither has
    committed) and leave the run open for ever."""
    with transaction.atomic(savepoint=False):
        run = Run.objects.select_for_update().filter(pk=run_id).values("hands_off", "state").first()
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


@dataclass
class JobContext:
    """Everything a job needs, read in one short transaction."""

    job_id: int
    kind: str
    run_id: int
    hands_off: bool
    profile: ProfileSnapshot
    alternate_models: list[str]
    project_id: int
    expansion_factor: int
    reanswer_limit: int
    item_id: int
    item_status: str
    external_id: str
    language: str
    specialty: str
    question_type: str
    stem: str
    options: dict[str, str]
    answer: str
    cot: str
    payload: dict = field(default_factory=dict)
    # A re-answer job's attempts so far, read with the claim.
    attempts: list[AttemptSummary] | None = None


# What a job needs of its run, profile and project, kept per process for a few seconds: one
# read per run instead of three joined tables per job. An edit to the profile mid-run (say, a
# lower in-flight limit) reaches the workers within this many seconds.
RUN_FACTS_SECONDS = 5.0
_run_facts: dict[int, tuple[float, dict]] = {}
_run_facts_lock = threading.Lock()


def run_facts(run_id: int) -> dict:
    now = time.monotonic()
    with _run_facts_lock:
        hit = _run_facts.get(run_id)
    if hit is not None and now - hit[0] < RUN_FACTS_SECONDS:
        return hit[1]
    run = Run.objects.select_related("profile", "project").get(pk=run_id)
    facts = {
        "hands_off": run.hands_off,
        "profile": ProfileSnapshot.of(run.profile),
        "alternate_models": run.profile.models_for_rotation(),
        "project_id": run.project_id,
        "expansion_factor": run.project.expansion_factor,
        "reanswer_limit": run.project.reanswer_attempts,
    }
    with _run_facts_lock:
        _run_facts[run_id] = (now, facts)
    return facts


def run_facts_clear() -> None:
    with _run_facts_lock:
        _run_facts.clear()


_ITEM_FIELDS = (
    "status",
    "external_id",
    "language",
    "specialty",
    "question_type",
    "current_version__stem",
    "current_version__answer",
    "current_version__cot",
    *(f"current_version__option_{label.lower()}" for label in OPTION_LABELS),
)


_CLAIM_SQL = (
    "UPDATE generation_job SET state = %s, claim = %s, updated_at = %s "
    "WHERE id = %s AND (state = %s OR (state = %s AND claim = %s)) "
    "AND EXISTS (SELECT 1 FROM generation_run r WHERE r.id = generation_job.run_id "
    "AND r.state = %s) RETURNING run_id, item_id, kind, payload"
)


def _claim_update(job_id: int, claim: str) -> tuple[int, int, str, dict] | None:
    """Claim a queued job (or take back our own claim) of a running run in one statement.
    Returns (run id, item id, kind, payload), or None when that does not apply."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            [
                *(Job.State.RUNNING, claim, now, job_id),
                *(Job.State.QUEUED, Job.State.RUNNING, claim, Run.State.RUNNING),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    run_id, item_id, kind, payload = row
    return run_id, item_id, kind, json.loads(payload) if isinstance(payload, str) else payload


def _claim_refused(job_id: int, claim: str) -> None:
    """Why a job could not be claimed, and its consequence: a job of a cancelled or finished
    run is cancelled; our own claim on a job of a paused run (a message redelivered while the
    run was paused) is given back, so that resuming runs it; anything else (finished, held by
    another task, queued in a paused run) is left as it is."""
    with transaction.atomic():
        jobs = Job.objects.select_for_update(of=("self",)).select_related("run")
        job = jobs.filter(pk=job_id).first()
        if job is None or job.state not in ACTIVE_JOB_STATES:
            return
        if job.state == Job.State.RUNNING and job.claim != claim:
            return
        if job.run.state in {Run.State.CANCELLED, Run.State.DONE}:
            job.state = Job.State.CANCELLED
            job.save(update_fields=["state", "updated_at"])
        elif job.run.state == Run.State.PAUSED and job.state == Job.State.RUNNING:
            job.state, job.claim = Job.State.QUEUED, ""
            job.save(update_fields=["state", "claim", "updated_at"])


def job_claim(*, job_id: int, claim: str) -> JobContext | None:
    """Claim a job for this task, or return None when there is nothing to do: the job is
    finished, another task holds it, or its run is paused (the job stays queued) or cancelled.
    A redelivered message carries the same task id, so it takes its own claim back.

    The hot path is one UPDATE … RETURNING for the claim, one read of the item and, for a
    re-answer, one of its attempts; the run's facts come from a short per-process cache."""
    claimed = _claim_update(job_id, claim)
    if claimed is None:
        _claim_refused(job_id, claim)
        return None
    run_id, item_id, kind, payload = claimed
    facts = run_facts(run_id)
    row = Item.objects.filter(pk=item_id).values_list(*_ITEM_FIELDS).get()
    status, external_id, language, specialty, question_type, stem, answer, cot = row[:8]
    has_version = stem is not None
    options = {label: text for label, text in zip(OPTION_LABELS, row[8:], strict=True) if text}
    attempts = None
    if kind == Job.Kind.REANSWER:
        attempts = _attempts(item_id)
    return JobContext(
        job_id=job_id,
        kind=kind,
        run_id=run_id,
        item_id=item_id,
        item_status=status,
        external_id=external_id,
        language=language,
        specialty=specialty,
        question_type=question_type,
        stem=stem if has_version else "",
        options=options if has_version else {},
        answer=answer if has_version else "",
        cot=cot if has_version else "",
        payload=payload or {},
        attempts=attempts,
        **facts,
    )


def job_finish(
    *, job_id: int, state: str = Job.State.DONE, error: str = "", ctx: JobContext | None = None
) -> None:
    """Mark a claimed or queued job finished (a conditional UPDATE: finishing twice is a
    no-op) and close its run when that was the last job of a run that is not hands-off."""
    changed = Job.objects.filter(pk=job_id, state__in=ACTIVE_JOB_STATES).update(
        state=state, error=error, updated_at=timezone.now()
    )
    if not changed or (ctx is not None and ctx.hands_off):
        return
    run_id = (
        ctx.run_id if ctx else Job.objects.filter(pk=job_id).values_list("run_id", flat=True)[0]
    )
    _run_maybe_finish(run_id)


def job_release(*, job_id: int) -> None:
    """Give a claimed job back: its run was paused (it runs again on resume) or cancelled."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("run").get(pk=job_id)
        if job.state != Job.State.RUNNING:
            return
        if job.run.state == Run.State.CANCELLED:
            job.state = Job.State.CANCELLED
        else:
            job.state = Job.State.QUEUED
            job.claim = ""
        job.save(update_fields=["state", "claim", "updated_at"])
        _run_maybe_finish(job.run_id)


def run_state(*, run_id: int) -> str:
    return Run.objects.filter(pk=run_id).values_list("state", flat=True).first() or ""


def run_pause_for_payment(*, run_id: int, job_id: int, message: str) -> None:
    """HTTP 402: retrying cannot help, so the whole run pauses and says why."""
    run = Run.objects.get(pk=run_id)
    with transaction.atomic():
        job_release(job_id=job_id)
        if run.state == Run.State.RUNNING:
            run_pause(run=run, message=message)


def job_fail(*, job_id: int, reason: str) -> None:
    """A call failed after its retries: the job records why, and an item in a machine stage
    moves to `error` with the reason, where the retry action picks it up."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("item").get(pk=job_id)
        if job.state in {Job.State.DONE, Job.State.ERROR, Job.State.CANCELLED}:
            return
        item = job.item
        if item.status in {Status.GENERATING, Status.REANSWERING}:
            with contextlib.suppress(StaleStatus):
                transition(item, Status.ERROR, reason=reason, data={"job": job.pk})
        elif job.kind == Job.Kind.REGENERATE:
            Event.objects.create(
                project_id=item.project_id,
                item=item,
                kind="regenerate_failed",
                reason=reason,
                data={"job": job.pk},
            )
        job.state = Job.State.ERROR
        job.error = reason
        job.save(update_fields=["state", "error", "updated_at"])
        _run_maybe_finish(job.run_id)


def job_retry(*, job: Job, actor=None) -> Job:
    """The retry action for a failed job: the item returns to the stage that failed and the
    job is queued again (reopening its run if it had finished)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("item", "run").get(pk=job.pk)
        if job.state != Job.State.ERROR:
            raise GenerationError(_("Only a job that failed can be retried"))
        if job.run.state == Run.State.CANCELLED:
            raise GenerationError(_("This run was cancelled; start a new run instead"))
        item = job.item
        if item.status == Status.ERROR:
            back = Status.GENERATING if job.kind == Job.Kind.COT else Status.REANSWERING
            transition(item, back, actor=actor, reason="retry after error", data={"job": job.pk})
        job.state = Job.State.QUEUED
        job.error = ""
        job.claim = ""
        job.dispatched_at = None
        job.save(update_fields=["state", "error", "claim", "dispatched_at", "updated_at"])
        if job.run.state == Run.State.DONE:
            Run.objects.filter(pk=job.run_id).update(state=Run.State.RUNNING, finished_at=None)
        jobs_dispatch_on_commit([job.pk])
    return job


def item_retry(*, item: Item, actor=None) -> Job:
    """The retry action for an item in `error`: retries the job that failed on it."""
    job = (
        Job.objects.filter(item=item, state=Job.State.ERROR)
        .exclude(run__state=Run.State.CANCELLED)
        .order_by("-updated_at", "-id")
        .first()
    )
    if job is None:
        raise GenerationError(_("No failed LLM job to retry for this item"))
    return job_retry(job=job, actor=actor)


# -- the call log ---------------------------------------------------------------------------


@dataclass
class CallInfo:
    """A model call to be logged, with the context it was made in."""

    record: TryRecord
    task: str
    messages: list[dict]
    prompt_version_id: int | None


def llm_call_record(*, profile: ProfileSnapshot, ctx: JobContext | None, call: CallInfo) -> LLMCall:
    record = call.record
    reply = record.reply
    return LLMCall.objects.create(
        profile_id=profile.id,
        run_id=ctx.run_id if ctx else None,
        job_id=ctx.job_id if ctx else None,
        item_id=ctx.item_id if ctx else None,
        task=call.task,
        prompt_version_id=call.prompt_version_id,
        model=record.model,
        try_number=record.try_number,
        outcome=record.outcome,
        http_status=record.http_status,
        error=record.error,
        messages=call.messages,
        reply=reply.content if reply else "",
        reasoning=reply.reasoning if reply else "",
        finish_reason=reply.finish_reason if reply else "",
        prompt_tokens=reply.prompt_tokens if reply else 0,
        completion_tokens=reply.completion_tokens if reply else 0,
        cost=profile.cost(reply.prompt_tokens, reply.completion_tokens) if reply else 0,
        latency_ms=record.latency_ms,
    )


# -- CoT ------------------------------------------------------------------------------------


def cot_begin(*, ctx: JobContext) -> bool:
    """Move an imported seed to `generating`. Returns False when there is nothing to do: the
    seed already carries a CoT (it skips straight to `generated`) or it has moved on."""
    # Status and CoT were read with the claim, a moment ago; the move itself is conditional.
    item = Item(pk=ctx.item_id, project_id=ctx.project_id, status=ctx.item_status)
    if item.status == Status.GENERATING:
        return True
    if item.status != Status.IMPORTED:
        return False
    if ctx.cot.strip():
        with transaction.atomic():
            transition(item, Status.GENERATED, reason="the seed came with its CoT")
            _after_generated(ctx, item)
        return False
    transition(item, Status.GENERATING, data={"job": ctx.job_id})
    return True


def _after_generated(ctx: JobContext, item: Item) -> None:
    """What follows a seed's CoT: expansion (hands-off runs), or straight to first-pass review
    when the project does not expand."""
    if ctx.expansion_factor <= 1:
        transition_many([item.pk], Status.GENERATED, Status.FIRST_REVIEW)
    elif ctx.hands_off:
        jobs_dispatch_on_commit(_jobs_add(Run(pk=ctx.run_id), Job.Kind.EXPAND, [item.pk]))


def cot_apply(
    *,
    ctx: JobContext,
    call: CallInfo,
    cot: str,
    reasoning: str,
    picked: str | None,
    parse_method: str,
) -> bool:
    """Store the CoT as a new version and move the seed to `generated`, in one transaction.
    Returns False (and writes nothing) when a redelivered task finds the work already done."""
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call).pk
        prompt_version_id = call.prompt_version_id
        item = Item.objects.select_for_update().get(pk=ctx.item_id)
        if item.status != Status.GENERATING:
            return False
        item_version_create(
            item=item,
            author_kind=AuthorKind.LLM,
            reason="chain of thought generated",
            cot=cot,
            reasoning=reasoning,
            provenance={
                "task": "cot",
                "prompt_version": prompt_version_id,
                "llm_call": call_id,
                "model": ctx.profile.model,
                "profile": ctx.profile.name,
                "picked": picked or "",
                "parse_method": parse_method,
                "matches_key": picked == ctx.answer if picked else None,
                "job": ctx.job_id,
            },
        )
        transition(item, Status.GENERATED, data={"job": ctx.job_id, "llm_call": call_id})
        _after_generated(ctx, item)
        job_finish(job_id=ctx.job_id, ctx=ctx)
    return True


# -- expansion ------------------------------------------------------------------------------


def family_members(*, seed_id: int):
    return Item.objects.filter(family_id=seed_id, kind=ItemKind.SYNTHETIC)


def expand_plan(*, ctx: JobContext) -> int | None:
    """How many synthesized questions the family still needs, or None when the job has
    nothing to do. Indexes the seed for near-duplicate checks."""
    # The status was read with the claim, a moment ago.
    if ctx.item_status != Status.GENERATED:
        return None
    dedup.index_item(
        project_id=ctx.project_id,
        item_id=ctx.item_id,
        band_values=dedup.bands(dedup.shingles(dedup.question_text(ctx.stem, ctx.options))),
    )
    return max(0, ctx.expansion_factor - 1 - family_members(seed_id=ctx.item_id).count())


def _texts_of(item_ids: set[int]) -> dict[int, set[str]]:
    """The shingles of each item's current question text, in one query."""
    fields = ["current_version__stem"]
    fields += [f"current_version__option_{label.lower()}" for label in OPTION_LABELS]
    return {
        row[0]: dedup.shingles(
            dedup.question_text(
                row[1] or "", {k: v for k, v in zip(OPTION_LABELS, row[2:], strict=True) if v}
            )
        )
        for row in Item.objects.filter(pk__in=item_ids).values_list("pk", *fields)
    }


def _siblings_insert(siblings: list[Item], versions: list[ItemVersion]) -> None:
    """Insert new items with their first versions (one version per item, in order). On
    PostgreSQL the ids come from the sequences first, so each item is written with its current
    version already set (the foreign keys are checked at commit) by COPY; elsewhere the items
    are inserted, then their versions, then pointed at them."""
    if is_postgres():
        for item, version, item_id, version_id in zip(
            siblings,
            versions,
            allocate_ids(Item, len(siblings)),
            allocate_ids(ItemVersion, len(versions)),
            strict=True,
        ):
            item.pk, version.pk = item_id, version_id
            item.current_version_id, version.item_id = version_id, item_id
        insert_objects(Item, siblings)
        insert_objects(ItemVersion, versions)
        return
    Item.objects.bulk_create(siblings)
    for item, version in zip(siblings, versions, strict=True):
        version.item_id = item.pk
    ItemVersion.objects.bulk_create(versions)
    for item, version in zip(siblings, versions, strict=True):
        item.current_version = version
    Item.objects.bulk_update(siblings, ["current_version"])


def family_store(
    *,
    ctx: JobContext,
    questions: list[dict],
    call: CallInfo,
) -> tuple[int, int, str]:
    """Create synthetic siblings from parsed questions, dropping (and logging) near-duplicates
    and anything beyond the family's size. Returns (created, dropped, the run's state).

    A family's siblings, their first versions, their events and their near-duplicate index
    rows are written with one INSERT per table: expansion is the pipeline's heaviest database
    step, and one `item_version_create` per sibling costs a lock and five statements each. The
    rows are the ones `item_version_create` would write for a new item (version 1, a
    `version_created` event)."""
    model = call.record.model
    prompt_version_id = call.prompt_version_id
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call).pk
        seed = Item.objects.select_for_update().get(pk=ctx.item_id)
        if seed.status != Status.GENERATED:
            return 0, 0, run_state(run_id=ctx.run_id)
        taken = set(family_members(seed_id=seed.pk).values_list("external_id", flat=True))
        need = ctx.expansion_factor - 1 - len(taken)
        n = 0
        # (question, external id, shingles, band values) of each sibling to create.
        accepted: list[tuple[dict, str, set[str], list[int]]] = []
        dropped_questions: list[tuple[dict, int]] = []
        questions = questions[: max(0, need) + MAX_DROPPED_PER_REPLY]
        grams_of = [dedup.shingles(dedup.question_text(q["stem"], q["options"])) for q in questions]
        bands_of = [dedup.bands(grams) for grams in grams_of]
        # Every question's candidates in the project, and their texts, in two queries.
        candidates_of = dedup.candidates_many(project_id=ctx.project_id, band_lists=bands_of)
        texts = _texts_of({i for ids in candidates_of for i in ids})
        for question, grams, band_values, candidate_ids in zip(
            questions, grams_of, bands_of, candidates_of, strict=True
        ):
            if len(accepted) >= need:
                break
            twin = next(
                (i for i in candidate_ids if dedup.jaccard(grams, texts[i]) >= dedup.THRESHOLD),
                None,
            )
            if twin is None:
                # Siblings accepted from this same reply are not indexed yet: compare directly
                # and name the twin by its position until its row exists.
                twin = next(
                    (
                        -(i + 1)
                        for i, (_q, _e, other, _b) in enumerate(accepted)
                        if dedup.jaccard(grams, other) >= dedup.THRESHOLD
                    ),
                    None,
                )
            if twin is not None:
                dropped_questions.append((question, twin))
                continue
            while True:
                n += 1
                external_id = f"{seed.external_id}~s{n}"
                if external_id not in taken:
                    break
            taken.add(external_id)
            accepted.append((question, external_id, grams, band_values))
        siblings = [
            Item(
                project_id=ctx.project_id,
                kind=ItemKind.SYNTHETIC,
                family_id=seed.pk,
                external_id=external_id,
                question_type=seed.question_type,
                specialty=seed.specialty,
                language=seed.language,
                source=seed.source,
                status=Status.GENERATED,
            )
            for _q, external_id, _g, _b in accepted
        ]
        reason = "synthesized from the seed's explanation"
        versions = [
            ItemVersion(
                number=1,
                stem=question["stem"],
                answer=question["answer"],
                cot=question["cot"],
                reasoning="",
                author_kind=AuthorKind.LLM,
                author=None,
                reason=reason,
                provenance={
                    "task": "synthesize",
                    "prompt_version": prompt_version_id,
                    "llm_call": call_id,
                    "model": model,
                    "profile": ctx.profile.name,
                    "aspect": question.get("aspect", ""),
                    "seed": seed.pk,
                    "job": ctx.job_id,
                },
                **{
                    f"option_{label.lower()}": question["options"].get(label, "")
                    for label in OPTION_LABELS
                },
            )
            for question, _e, _g, _b in accepted
        ]
        _siblings_insert(siblings, versions)
        events = []
        for question, twin in dropped_questions:
            twin_id = siblings[-twin - 1].pk if twin < 0 else twin
            events.append(
                Event(
                    project_id=ctx.project_id,
                    item_id=seed.pk,
                    kind="near_duplicate_dropped",
                    reason=f"synthesized question too similar to item {twin_id}",
                    data={
                        "similar_to": twin_id,
                        "stem": question["stem"][:500],
                        "llm_call": call_id,
                        "job": ctx.job_id,
                    },
                )
            )
        for sibling, (question, _e, _g, _b) in zip(siblings, accepted, strict=True):
            events.append(
                Event(
                    project_id=ctx.project_id,
                    item_id=sibling.pk,
                    kind="created",
                    to_status=Status.GENERATED,
                    reason="synthesized from its seed",
                    data={
                        "seed": seed.pk,
                        "llm_call": call_id,
                        "aspect": question.get("aspect", ""),
                    },
                )
            )
            events.append(
                Event(
                    project_id=ctx.project_id,
                    item_id=sibling.pk,
                    kind="version_created",
                    reason=reason,
                    data={"number": 1, "author_kind": AuthorKind.LLM},
                )
            )
        insert_objects(Event, events)
        insert_objects(
            NearDuplicateBand,
            [
                NearDuplicateBand(
                    project_id=ctx.project_id, item_id=sibling.pk, band=band, value=value
                )
                for sibling, (_q, _e, _g, band_values) in zip(siblings, accepted, strict=True)
                for band, value in enumerate(band_values)
            ],
        )
    return len(siblings), len(dropped_questions), run_state(run_id=ctx.run_id)


def family_complete(*, ctx: JobContext, short_by: int = 0, reason: str = "") -> None:
    """The family is as complete as it will get: seed and siblings go to first-pass review."""
    with transaction.atomic():
        seed = Item.objects.select_for_update().get(pk=ctx.item_id)
        if seed.status == Status.GENERATED:
            ids = [seed.pk, *family_members(seed_id=seed.pk).values_list("pk", flat=True)]
            transition_many(ids, Status.GENERATED, Status.FIRST_REVIEW)
            if short_by:
                Event.objects.create(
                    project_id=ctx.project_id,
                    item=seed,
                    kind="expansion_short",
                    reason=reason,
                    data={"missing": short_by, "job": ctx.job_id},
                )
        job_finish(job_id=ctx.job_id, ctx=ctx)


# -- re-answering ---------------------------------------------------------------------------


@dataclass
class AttemptSummary:
    number: int
    parsed: bool
    correct: bool


def reanswer_state(*, ctx: JobContext) -> tuple[str, list[AttemptSummary], str]:
    """The item's status, its attempts so far and the run's state."""
    status = Item.objects.filter(pk=ctx.item_id).values_list("status", flat=True).first() or ""
    return status, _attempts(ctx.item_id), run_state(run_id=ctx.run_id)


def _attempts(item_id: int) -> list[AttemptSummary]:
    return [
        AttemptSummary(number=n, parsed=p, correct=c)
        for n, p, c in ReanswerAttempt.objects.filter(item_id=item_id)
        .order_by("number")
        .values_list("number", "parsed", "correct")
    ]


def reanswer_attempt_store(*, ctx: JobContext, call: CallInfo, **fields) -> tuple[bool, str]:
    """Log the call and append its attempt in one transaction. Returns (stored, run state);
    not stored when this attempt number exists already (a redelivered task raced its twin),
    in which case the call alone is logged and the caller re-reads the state."""
    try:
        with transaction.atomic():
            row = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
            ReanswerAttempt.objects.create(
                item_id=ctx.item_id, run_id=ctx.run_id, llm_call=row, **fields
            )
            return True, run_state(run_id=ctx.run_id)
    except IntegrityError:
        llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        return False, run_state(run_id=ctx.run_id)


def reanswer_conclude(*, ctx: JobContext, to: str, reason: str, data: dict) -> None:
    """A correct attempt sends the item to consensus; the last strike sends it to the panel.

    The move and the job's end are two steps on purpose (fewer round trips on the hot path):
    if the worker dies between them, the redelivered job finds the item moved and just
    finishes."""
    item = Item(pk=ctx.item_id, project_id=ctx.project_id, status=Status.REANSWERING)
    with contextlib.suppress(StaleStatus):
        transition(item, to, reason=reason, data={**data, "job": ctx.job_id})
    job_finish(job_id=ctx.job_id, ctx=ctx)


def reanswer_jobs_add(*, item_ids: list[int]) -> list[int]:
    """Attach re-answer jobs to the project's open hands-off run (or open one)."""
    by_project: dict[int, list[int]] = {}
    for item_id, project_id in Item.objects.filter(
        pk__in=item_ids, status=Status.REANSWERING
    ).values_list("pk", "project_id"):
        by_project.setdefault(project_id, []).append(item_id)
    job_ids: list[int] = []
    with transaction.atomic():
        for project_id, ids in by_project.items():
            run = (
                Run.objects.select_for_update()
                .filter(
                    project_id=project_id,
                    hands_off=True,
                    state__in=[Run.State.RUNNING, Run.State.PAUSED],
                    stage__in=[Stage.ALL, Stage.REANSWER],
                )
                .order_by("-created_at", "-id")
                .first()
            )
            if run is None:
                run = Run.objects.create(
                    project_id=project_id,
                    profile=profile_default_get(),
                    stage=Stage.REANSWER,
                    hands_off=True,
                    message="",
                )
            busy = set(
                Job.objects.filter(
                    item_id__in=ids, kind=Job.Kind.REANSWER, state__in=ACTIVE_JOB_STATES
                ).values_list("item_id", flat=True)
            )
            new_ids = _jobs_add(run, Job.Kind.REANSWER, [i for i in ids if i not in busy])
            if run.state == Run.State.RUNNING:
                job_ids += new_ids
        jobs_dispatch_on_commit(job_ids)
    return job_ids


# -- guided regeneration --------------------------------------------------------------------


def regenerate_job_create(*, item_id: int, guidance: str, actor_id: int | None) -> Job:
    import uuid

    guidance = guidance.strip()
    if not guidance:
        raise GenerationError(_("Guided regeneration needs the experts' comments"))
    with transaction.atomic():
        item = Item.objects.get(pk=item_id)
        if item.status != Status.PANEL_REVIEW:
            raise GenerationError(_("Only an item under panel review can be regenerated"))
        run = (
            Run.objects.filter(
                project_id=item.project_id,
                stage=Stage.REANSWER,
                hands_off=True,
                state=Run.State.RUNNING,
            )
            .order_by("-created_at", "-id")
            .first()
        ) or Run.objects.create(
            project_id=item.project_id,
            profile=profile_default_get(),
            stage=Stage.REANSWER,
            hands_off=True,
        )
        job = Job.objects.create(
            run=run,
            item=item,
            kind=Job.Kind.REGENERATE,
            key=f"regen:{uuid.uuid4().hex}",
            payload={"guidance": guidance, "actor_id": actor_id},
        )
        jobs_dispatch_on_commit([job.pk])
    return job


def regenerate_apply(*, ctx: JobContext, call: CallInfo, cot: str, reasoning: str) -> bool:
    model = call.record.model
    prompt_version_id = call.prompt_version_id
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call).pk
        job = Job.objects.select_for_update().get(pk=ctx.job_id)
        item = Item.objects.get(pk=ctx.item_id)
        # The version records its job, so even a job whose state was lost cannot add a second.
        if job.state != Job.State.RUNNING or item.versions.filter(provenance__job=job.pk).exists():
            job_finish(job_id=ctx.job_id, ctx=ctx)
            return False
        actor_id = ctx.payload.get("actor_id")
        version = item_version_create(
            item=item,
            author_kind=AuthorKind.LLM_GUIDED,
            reason="CoT regenerated with the panel's guidance",
            cot=cot,
            reasoning=reasoning,
            marks_modified=True,
            provenance={
                "task": "regenerate",
                "prompt_version": prompt_version_id,
                "llm_call": call_id,
                "model": model,
                "profile": ctx.profile.name,
                "guidance": ctx.payload.get("guidance", ""),
                "job": ctx.job_id,
            },
        )
        Event.objects.create(
            project_id=item.project_id,
            item=item,
            actor_id=actor_id,
            kind="regenerated",
            reason=ctx.payload.get("guidance", "")[:2000],
            data={"version": version.number, "llm_call": call_id, "job": ctx.job_id},
        )
        job_finish(job_id=ctx.job_id, ctx=ctx)
    return True
