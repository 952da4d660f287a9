"""A job's life: its context, claim, finish, release, failure and retry."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from generation.client import ProfileSnapshot
from generation.models import Job, ReanswerAttempt, Run
from generation.services.common import ACTIVE_JOB_STATES, GenerationError
from generation.services.dispatch import jobs_dispatch_on_commit
from generation.services.facts import run_facts
from generation.services.runs import _run_maybe_finish, run_pause
from medcot.bulk import is_postgres
from medcot.lifecycle import StaleStatus, Status, transition, transition_many
from medcot.models import OPTION_LABELS, Event, Item, ItemVersion


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


# What a job reads of its item and the item's current version, in one statement.
# Column names from code, values as parameters.
_ITEM_SQL = (
    "SELECT i.status, i.external_id, i.language, i.specialty, i.question_type, "  # noqa: S608
    "v.stem, v.answer, v.cot, "
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + f" FROM {Item._meta.db_table} i LEFT JOIN {ItemVersion._meta.db_table} v "
    "ON v.id = i.current_version_id WHERE i.id = %s"
)


_CLAIM_SQL = (
    "UPDATE generation_job SET state = %s, claim = %s, updated_at = %s "
    "WHERE id = %s AND (state = %s OR (state = %s AND (claim = %s OR %s))) "
    "AND EXISTS (SELECT 1 FROM generation_run r WHERE r.id = generation_job.run_id "
    "AND r.state = %s) RETURNING run_id, item_id, kind, payload"
)


def _claim_update(job_id: int, claim: str, held: bool) -> tuple[int, int, str, dict] | None:
    """Claim a queued job (or take back our own claim, or, `held`, a running job whose copy is
    gone) of a running run in one statement. Returns (run id, item id, kind, payload), or None
    when that does not apply."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, _claim_params(job_id, claim, held))
        row = cursor.fetchone()
    if row is None:
        return None
    run_id, item_id, kind, payload = row
    return run_id, item_id, kind, json.loads(payload) if isinstance(payload, str) else payload


def _claim_refused(job_id: int, claim: str, held: bool = False) -> None:
    """Why a job could not be claimed, and its consequence: a job of a cancelled or finished
    run is cancelled; our own claim (or, `held`, any) on a job of a paused run (a message
    redelivered while the run was paused) is given back, so that resuming runs it; anything
    else (finished, held by another task, queued in a paused run) is left as it is."""
    with transaction.atomic():
        jobs = Job.objects.select_for_update(of=("self",), no_key=True).select_related("run")
        job = jobs.filter(pk=job_id).first()
        if job is None or job.state not in ACTIVE_JOB_STATES:
            return
        if job.state == Job.State.RUNNING and job.claim != claim and not held:
            return
        if job.run.state in {Run.State.CANCELLED, Run.State.DONE}:
            job.state = Job.State.CANCELLED
            job.save(update_fields=["state", "updated_at"])
            _cancelled_job_item_return(job)
        elif job.run.state == Run.State.PAUSED and job.state == Job.State.RUNNING:
            job.state, job.claim = Job.State.QUEUED, ""
            job.save(update_fields=["state", "claim", "updated_at"])


# PostgreSQL: the claim, the item, its current version and (for a re-answer) its attempts so
# far in one statement. The attempts come as rows of [number, parsed, correct].
_CLAIM_READ_SQL = (
    "WITH j AS (" + _CLAIM_SQL + ") "
    "SELECT j.run_id, j.item_id, j.kind, j.payload, i.status, i.external_id, i.language, "
    "i.specialty, i.question_type, v.stem, v.answer, v.cot, "
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + ", CASE WHEN j.kind = %s THEN ARRAY(SELECT ARRAY[a.number, a.parsed::int, a.correct::int] "  # noqa: S608
    "FROM generation_reanswerattempt a WHERE a.item_id = j.item_id ORDER BY a.number) END "
    f"FROM j JOIN {Item._meta.db_table} i ON i.id = j.item_id "
    f"LEFT JOIN {ItemVersion._meta.db_table} v ON v.id = i.current_version_id"
)


def _claim_params(job_id: int, claim: str, held: bool = False) -> list:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    return [
        *(Job.State.RUNNING, claim, now, job_id),
        *(Job.State.QUEUED, Job.State.RUNNING, claim, held, Run.State.RUNNING),
    ]


def _claim_and_read(job_id: int, claim: str, held: bool) -> tuple | None:
    """(run id, item id, kind, payload, the item row, attempts or None) for a claimed job."""
    if is_postgres():
        with connection.cursor() as cursor:
            params = [*_claim_params(job_id, claim, held), Job.Kind.REANSWER]
            cursor.execute(_CLAIM_READ_SQL, params)
            row = cursor.fetchone()
        if row is None:
            return None
        attempts = None
        if row[-1] is not None:
            attempts = [
                AttemptSummary(number=n, parsed=bool(p), correct=bool(c)) for n, p, c in row[-1]
            ]
        return (*row[:4], row[4:-1], attempts)
    claimed = _claim_update(job_id, claim, held)
    if claimed is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_ITEM_SQL, [claimed[1]])
        item_row = cursor.fetchone()
    attempts = _attempts(claimed[1]) if claimed[2] == Job.Kind.REANSWER else None
    return (*claimed, item_row, attempts)


def job_claim(*, job_id: int, claim: str, held: bool = False) -> JobContext | None:
    """Claim a job for this task, or return None when there is nothing to do: the job is
    finished, another task holds it, or its run is paused (the job stays queued) or cancelled.
    A redelivered message carries the same task id, so it takes its own claim back. `held`:
    this copy holds the job's lock (`dbexec.job_held`), so no other copy runs it, and it takes
    a running job over whatever its claim (the copy that claimed it is gone).

    The hot path is one statement on PostgreSQL (the claim's UPDATE … RETURNING with the item,
    its version and its attempts), three elsewhere; the run's facts come from a short
    per-process cache."""
    claimed = _claim_and_read(job_id, claim, held)
    if claimed is None:
        _claim_refused(job_id, claim, held)
        return None
    run_id, item_id, kind, payload, row, attempts = claimed
    if isinstance(payload, str):
        payload = json.loads(payload)
    facts = run_facts(run_id)
    status, external_id, language, specialty, question_type, stem, answer, cot = row[:8]
    has_version = stem is not None
    options = {label: text for label, text in zip(OPTION_LABELS, row[8:], strict=True) if text}
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


_FINISH_SQL = (
    "UPDATE generation_job SET state = %s, error = %s, updated_at = %s "
    "WHERE id = %s AND state IN (%s, %s)"
)


def _finish_params(job_id: int, state: str = Job.State.DONE, error: str = "") -> list:
    """The parameters of `_FINISH_SQL`."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    return [state, error, now, job_id, *ACTIVE_JOB_STATES]


def job_finish(
    *, job_id: int, state: str = Job.State.DONE, error: str = "", ctx: JobContext | None = None
) -> None:
    """Mark a claimed or queued job finished (a conditional UPDATE: finishing twice is a
    no-op) and close its run when that was the last job of a run that is not hands-off."""
    with connection.cursor() as cursor:
        cursor.execute(_FINISH_SQL, _finish_params(job_id, state, error))
        changed = cursor.rowcount
    if not changed or (ctx is not None and ctx.hands_off):
        return
    run_id = (
        ctx.run_id if ctx else Job.objects.filter(pk=job_id).values_list("run_id", flat=True)[0]
    )
    _run_maybe_finish(run_id)


def _cancelled_job_item_return(job: Job) -> None:
    """A CoT job of a cancelled run that had begun: its seed goes back to `imported`, where the
    next run's CoT stage finds it (a seed left in `generating` would wait for ever)."""
    if job.kind == Job.Kind.COT:
        transition_many([job.item_id], Status.GENERATING, Status.IMPORTED, reason="run cancelled")


def job_release(*, job_id: int) -> None:
    """Give a claimed job back: its run was paused (it runs again on resume) or cancelled."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",), no_key=True)
            .select_related("run")
            .get(pk=job_id)
        )
        if job.state != Job.State.RUNNING:
            return
        if job.run.state == Run.State.CANCELLED:
            job.state = Job.State.CANCELLED
            _cancelled_job_item_return(job)
        else:
            job.state = Job.State.QUEUED
            job.claim = ""
        job.save(update_fields=["state", "claim", "updated_at"])
        _run_maybe_finish(job.run_id)


def run_state(*, run_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT state FROM generation_run WHERE id = %s", [run_id])
        row = cursor.fetchone()
    return row[0] if row else ""


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
        job = (
            Job.objects.select_for_update(of=("self",), no_key=True)
            .select_related("item")
            .get(pk=job_id)
        )
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
        job = (
            Job.objects.select_for_update(of=("self",), no_key=True)
            .select_related("item", "run")
            .get(pk=job.pk)
        )
        if job.state != Job.State.ERROR:
            raise GenerationError(_("Only a job that failed can be retried"))
        if job.run.state == Run.State.CANCELLED:
            raise GenerationError(_("This run was cancelled; start a new run instead"))
        item = job.item
        if item.status == Status.ERROR:
            back = Status.GENERATING if job.kind == Job.Kind.COT else Status.REANSWERING
            transition(
                item,
                back,
                actor=actor,
                reason=gettext_noop("retry after error"),
                data={"job": job.pk},
            )
        if job.kind == Job.Kind.REANSWER:
            # The failure counters start again: the attempts so far stay in the history, but
            # the allowance for unparseable replies counts only those after this retry, so the
            # job makes new calls instead of failing again on the old ones.
            job.payload = {
                **(job.payload or {}),
                "attempts_base": ReanswerAttempt.objects.filter(item=item).count(),
            }
        job.state = Job.State.QUEUED
        job.error = ""
        job.claim = ""
        job.dispatched_at = None
        job.save(
            update_fields=["state", "error", "claim", "dispatched_at", "payload", "updated_at"]
        )
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


@dataclass
class AttemptSummary:
    number: int
    parsed: bool
    correct: bool


def _attempts(item_id: int) -> list[AttemptSummary]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT number, parsed, correct FROM generation_reanswerattempt "
            "WHERE item_id = %s ORDER BY number",
            [item_id],
        )
        rows = cursor.fetchall()
    return [AttemptSummary(number=n, parsed=bool(p), correct=bool(c)) for n, p, c in rows]
