"""Writes on the generation side: profiles, runs and jobs, and the results of model calls.

Every function here is short database work. The model calls happen in `generation.pipeline`,
between these functions, with no database connection held.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from kombu.exceptions import OperationalError

try:
    from kombu.exceptions import BatchPublishError
except ImportError:  # kombu before 5.7, which has no publish batches
    BatchPublishError = OperationalError

from generation import dedup
from generation.client import ProfileSnapshot, TryRecord
from generation.models import (
    UNUSABLE_PREFIX,
    Job,
    LLMCall,
    LLMProfile,
    NearDuplicateBand,
    ReanswerAttempt,
    Run,
    Stage,
)
from medcot.bulk import (
    allocate_ids_many,
    ids_in,
    ids_params,
    insert_dicts_together,
    insert_row,
    insert_statement,
    is_postgres,
)
from medcot.lifecycle import StaleStatus, Status, transition, transition_ctes, transition_many
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
            # The built-in simulator honours a strict JSON schema; a real endpoint starts at
            # "none" (the prompt asks for JSON) until "Test endpoint" finds what it honours.
            "structured_output": LLMProfile.Structured.JSON_SCHEMA,
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


PROFILE_FIELDS = (
    "name",
    "base_url",
    "model",
    "alternate_models",
    "api_key_env",
    "max_in_flight",
    "timeout_seconds",
    "max_retries",
    "temperature",
    "top_p",
    "max_tokens",
    "structured_output",
    "price_input_per_m",
    "price_output_per_m",
    "simulated",
    "enabled",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def check_api_key_env(value: str) -> str:
    """The name of an environment variable, never a key: keys stay in the environment."""
    value = (value or "").strip()
    if not value:
        return ""
    if value.lower().startswith(("sk-", "sk_")) or (len(value) > 30 and value != value.upper()):
        raise GenerationError(
            _("This looks like a key. Put the key in an environment variable and enter its name.")
        )
    if not _ENV_NAME.match(value):
        raise GenerationError(
            _(
                "Enter the name of the environment variable that holds the key (letters, "
                "digits and _), not the key itself."
            )
        )
    return value


def _profile_fields(fields: dict) -> dict:
    unknown = set(fields) - set(PROFILE_FIELDS)
    if unknown:
        raise GenerationError(f"Unknown endpoint fields: {', '.join(sorted(unknown))}")
    values = dict(fields)
    if "api_key_env" in values:
        values["api_key_env"] = check_api_key_env(values["api_key_env"])
    if "alternate_models" in values:
        values["alternate_models"] = [
            m.strip() for m in values["alternate_models"] or [] if m.strip()
        ]
    return values


def _profile_clean(profile: LLMProfile) -> None:
    try:
        # An empty list of alternate models is fine, though a JSONField calls it blank.
        profile.full_clean(exclude=["last_test", "alternate_models"])
    except ValidationError as exc:
        raise GenerationError(
            " ".join(f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items())
        ) from exc


def profile_create(*, fields: dict, actor=None) -> LLMProfile:
    """A new LLM endpoint. Its key stays in the environment variable it names."""
    values = _profile_fields(fields)
    profile = LLMProfile(**values)
    _profile_clean(profile)
    profile.save()
    log.info("LLM endpoint %s created by %s", profile.name, actor)
    return profile


def profile_update(*, profile: LLMProfile, fields: dict, actor=None) -> LLMProfile:
    """Change an endpoint. Workers see the change within `RUN_FACTS_SECONDS`. The default
    endpoint cannot be disabled: runs the review app opens by itself use it."""
    values = _profile_fields(fields)
    if values.get("enabled") is False and profile.is_default:
        raise GenerationError(_("The default endpoint cannot be disabled."))
    with transaction.atomic():
        changed = {k: v for k, v in values.items() if getattr(profile, k) != v}
        for name, value in changed.items():
            setattr(profile, name, value)
        _profile_clean(profile)
        profile.save()
    if changed:
        log.info("LLM endpoint %s changed by %s: %s", profile.name, actor, sorted(changed))
    run_facts_clear()
    return profile


def profile_test(*, profile: LLMProfile, actor=None, set_mode: bool = True) -> dict:
    """Live calls to the endpoint (`generation.probe`); the result is stored on the profile as
    `last_test`, and the structured-output mode found is set on it (unless `set_mode` is
    False). Returns the result."""
    from generation.probe import endpoint_probe

    result = endpoint_probe(ProfileSnapshot.of(profile)).as_dict()
    fields = {"last_test": result}
    if result["ok"] and set_mode and result["structured_output"]:
        fields["structured_output"] = result["structured_output"]
    LLMProfile.objects.filter(pk=profile.pk).update(**fields)
    for name, value in fields.items():
        setattr(profile, name, value)
    log.info("LLM endpoint %s tested by %s: %s", profile.name, actor, result)
    run_facts_clear()
    return result


# -- runs and jobs --------------------------------------------------------------------------


DISPATCH_CHUNK = 500
# The broker queue of the model calls (medcot/celery.py routes generation.tasks.* to it).
LLM_QUEUE = "llm"


def _dispatch(job_ids: list[int]) -> None:
    """Send one message per job, and mark the jobs dispatched once their messages are out.
    A process that dies in between leaves a job queued and unmarked: `jobs_redispatch_lost`
    sends it again (a second message for a job is harmless, its claim turns it away)."""
    from generation.tasks import job_execute_task
    from medcot.celery import app

    for start in range(0, len(job_ids), DISPATCH_CHUNK):
        chunk = job_ids[start : start + DISPATCH_CHUNK]
        try:
            # One producer for the chunk, its messages sent together (on Redis, one pipeline
            # of LPUSHes instead of a client and a round trip per message) when the broker's
            # transport can batch; otherwise one by one, as before.
            with app.producer_or_acquire() as producer, _publish_batch(producer):
                for job_id in chunk:
                    job_execute_task.apply_async((job_id,), producer=producer)
        except (OperationalError, BatchPublishError) as exc:
            # The broker is unreachable (after Celery's own publish retries), or a batch
            # failed part-way. The jobs stay queued and unmarked, and the sweep sends them
            # once it is back (a message that did get out makes a harmless twin).
            log.warning("Could not dispatch %d LLM job(s) now: %s", len(job_ids) - start, exc)
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE generation_job SET dispatched_at = %s WHERE id {ids_in(chunk)} "  # noqa: S608
                "AND dispatched_at IS NULL",
                [connection.ops.adapt_datetimefield_value(timezone.now()), *ids_params(chunk)],
            )


def _publish_batch(producer):
    """kombu's publish batch (5.7 and newer), or nothing with an older kombu."""
    batch = getattr(producer, "batch", None)
    return batch(max_size=DISPATCH_CHUNK) if batch else contextlib.nullcontext()


def jobs_dispatch_on_commit(job_ids: list[int]) -> None:
    """Dispatch the jobs once the transaction that queued them commits."""
    if job_ids:
        transaction.on_commit(partial(_dispatch, list(job_ids)))


def jobs_redispatch_lost(
    *, grace_seconds: float | None = None, limit: int = 10_000, broker_check: bool = False
) -> int:
    """Send again the messages of queued jobs that never reached the broker: their process
    died between committing them and dispatching them. Only jobs of running runs, queued
    more than `grace_seconds` ago (the time a dispatch may take). Returns how many.

    Also those whose message the broker no longer holds (see `_jobs_without_message`): with
    `broker_check` (a worker starting, often because one died) always; otherwise when the
    broker holds fewer messages than there are such jobs."""
    if grace_seconds is None:
        grace_seconds = settings.MEDCOT_JOB_DISPATCH_GRACE
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    queued = Job.objects.filter(
        state=Job.State.QUEUED, updated_at__lt=cutoff, run__state=Run.State.RUNNING
    )
    ids = list(
        queued.filter(dispatched_at__isnull=True)
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
    if ids:
        log.warning("Re-dispatching %d queued job(s) whose dispatch was lost", len(ids))
        _dispatch(ids)
    silent = _jobs_without_message(
        queued.filter(dispatched_at__lt=cutoff), force=broker_check, limit=limit
    )
    if silent:
        log.warning(
            "Re-dispatching %d queued job(s) whose message the broker no longer holds",
            len(silent),
        )
        # Unmarked first: if the broker is unreachable now, the sweep above sends them later.
        Job.objects.filter(pk__in=silent, state=Job.State.QUEUED).update(dispatched_at=None)
        _dispatch(silent)
    return len(ids) + len(silent)


def _jobs_without_message(jobs, *, force: bool, limit: int) -> list[int]:
    """The dispatched jobs among `jobs` whose message is in neither the `llm` queue nor the
    broker's delivered-but-unacknowledged set. On Redis a worker takes a message off the queue
    and then records it as unacknowledged, in two steps: one killed in between loses the
    message, and its job would wait in `queued` for ever. Reading the whole queue costs about
    a second per 30,000 waiting messages, so unless `force`d it is read only when the broker
    holds fewer messages than there are such jobs. Empty where the broker cannot be read so
    (no Redis; tasks run in the process)."""
    from medcot.celery import app

    url = str(app.conf.broker_url or "")
    if app.conf.task_always_eager or not url.startswith(("redis://", "rediss://")):
        return []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        client = channel.client
        if not force:
            held = client.llen(LLM_QUEUE) + client.hlen(channel.unacked_key)
            if held >= jobs.count():
                return []
        candidates = list(jobs.order_by("id").values_list("pk", flat=True)[:limit])
        if not candidates:
            return []
        messages = [json.loads(raw) for raw in client.lrange(LLM_QUEUE, 0, -1)]
        messages += [json.loads(raw)[0] for raw in client.hvals(channel.unacked_key)]
    held_ids = {job_id for job_id in map(_message_job_id, messages) if job_id is not None}
    return [job_id for job_id in candidates if job_id not in held_ids]


def _message_job_id(message: dict) -> int | None:
    """The job a broker message (kombu's envelope of a Celery task) is for, if it is one."""
    from generation.tasks import job_execute_task

    try:
        if (message.get("headers") or {}).get("task") != job_execute_task.name:
            return None
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


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


# What a job reads of its item and the item's current version, in one statement.
# Column names from code, values as parameters.
_ITEM_SQL = (
    "SELECT i.status, i.external_id, i.language, i.specialty, i.question_type, "  # noqa: S608
    "v.stem, v.answer, v.cot, "
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + " FROM medcot_item i LEFT JOIN medcot_itemversion v ON v.id = i.current_version_id "
    "WHERE i.id = %s"
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
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, _claim_params(job_id, claim))
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
        jobs = Job.objects.select_for_update(of=("self",), no_key=True).select_related("run")
        job = jobs.filter(pk=job_id).first()
        if job is None or job.state not in ACTIVE_JOB_STATES:
            return
        if job.state == Job.State.RUNNING and job.claim != claim:
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
    + ", CASE WHEN j.kind = %s THEN ARRAY(SELECT ARRAY[a.number, a.parsed::int, a.correct::int] "
    "FROM generation_reanswerattempt a WHERE a.item_id = j.item_id ORDER BY a.number) END "
    "FROM j JOIN medcot_item i ON i.id = j.item_id "
    "LEFT JOIN medcot_itemversion v ON v.id = i.current_version_id"
)


def _claim_params(job_id: int, claim: str) -> list:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    return [
        *(Job.State.RUNNING, claim, now, job_id),
        *(Job.State.QUEUED, Job.State.RUNNING, claim, Run.State.RUNNING),
    ]


def _claim_and_read(job_id: int, claim: str) -> tuple | None:
    """(run id, item id, kind, payload, the item row, attempts or None) for a claimed job."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_READ_SQL, [*_claim_params(job_id, claim), Job.Kind.REANSWER])
            row = cursor.fetchone()
        if row is None:
            return None
        attempts = None
        if row[-1] is not None:
            attempts = [
                AttemptSummary(number=n, parsed=bool(p), correct=bool(c)) for n, p, c in row[-1]
            ]
        return (*row[:4], row[4:-1], attempts)
    claimed = _claim_update(job_id, claim)
    if claimed is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_ITEM_SQL, [claimed[1]])
        item_row = cursor.fetchone()
    attempts = _attempts(claimed[1]) if claimed[2] == Job.Kind.REANSWER else None
    return (*claimed, item_row, attempts)


def job_claim(*, job_id: int, claim: str) -> JobContext | None:
    """Claim a job for this task, or return None when there is nothing to do: the job is
    finished, another task holds it, or its run is paused (the job stays queued) or cancelled.
    A redelivered message carries the same task id, so it takes its own claim back.

    The hot path is one statement on PostgreSQL (the claim's UPDATE … RETURNING with the item,
    its version and its attempts), three elsewhere; the run's facts come from a short
    per-process cache."""
    claimed = _claim_and_read(job_id, claim)
    if claimed is None:
        _claim_refused(job_id, claim)
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


# -- the call log ---------------------------------------------------------------------------


@dataclass
class CallInfo:
    """A model call to be logged, with the context it was made in."""

    record: TryRecord
    task: str
    messages: list[dict]
    prompt_version_id: int | None


def _call_values(profile: ProfileSnapshot, ctx: JobContext | None, call: CallInfo) -> dict:
    record = call.record
    reply = record.reply
    return {
        "profile_id": profile.id,
        "run_id": ctx.run_id if ctx else None,
        "job_id": ctx.job_id if ctx else None,
        "item_id": ctx.item_id if ctx else None,
        "task": call.task,
        "prompt_version_id": call.prompt_version_id,
        "model": record.model,
        "try_number": record.try_number,
        "outcome": record.outcome,
        "http_status": record.http_status,
        "error": record.error,
        "messages": call.messages,
        "reply": reply.content if reply else "",
        "reasoning": reply.reasoning if reply else "",
        "finish_reason": reply.finish_reason if reply else "",
        "prompt_tokens": reply.prompt_tokens if reply else 0,
        "completion_tokens": reply.completion_tokens if reply else 0,
        "cost": profile.cost(reply.prompt_tokens, reply.completion_tokens) if reply else 0,
        "latency_ms": record.latency_ms,
    }


def unusable_reply_error(reason: str) -> str:
    return UNUSABLE_PREFIX + reason


def llm_call_record(*, profile: ProfileSnapshot, ctx: JobContext | None, call: CallInfo) -> int:
    """Log one HTTP try; returns the new row's id."""
    return insert_row(LLMCall, _call_values(profile, ctx, call))


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
            transition(item, Status.GENERATED, reason=gettext_noop("the seed came with its CoT"))
            _after_generated(ctx, item)
        return False
    transition(item, Status.GENERATING, data={"job": ctx.job_id})
    return True


def _status_locked(item_id: int) -> str:
    """The item's status, its row locked until the end of the transaction."""
    sql = "SELECT status FROM medcot_item WHERE id = %s"
    if connection.features.has_select_for_update:
        sql = "SELECT status FROM medcot_item WHERE id = %s FOR NO KEY UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [item_id])
        row = cursor.fetchone()
    return row[0] if row else ""


def _job_insert(run_id: int, kind: str, item_id: int) -> tuple[str, str, list]:
    """One job's key and its INSERT (returning the id, or nothing when the key exists)."""
    key = f"{run_id}:{kind}:{item_id}"
    sql, params = insert_statement(
        Job,
        {"run_id": run_id, "item_id": item_id, "kind": kind, "key": key, "payload": {}},
        on_conflict_do_nothing=("key",),
    )
    return key, sql, params


def _job_ids_to_send(key: str, inserted_id: int | None) -> list[int]:
    """The job to dispatch after `_job_insert`: the new one, or, when it existed already (a
    redelivered task got here before), that one if still queued."""
    if inserted_id is not None:
        return [inserted_id]
    return list(Job.objects.filter(key=key, state=Job.State.QUEUED).values_list("pk", flat=True))


def _job_add(run_id: int, kind: str, item_id: int) -> list[int]:
    """`_jobs_add` for one job, in one statement when the job is new."""
    key, sql, params = _job_insert(run_id, kind, item_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return _job_ids_to_send(key, row[0] if row else None)


def _after_generated(ctx: JobContext, item: Item) -> None:
    """What follows a seed's CoT: expansion (hands-off runs), or straight to first-pass review
    when the project does not expand."""
    if ctx.expansion_factor <= 1:
        transition_many([item.pk], Status.GENERATED, Status.FIRST_REVIEW)
    elif ctx.hands_off:
        jobs_dispatch_on_commit(_job_add(ctx.run_id, Job.Kind.EXPAND, item.pk))


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
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        prompt_version_id = call.prompt_version_id
        if _status_locked(ctx.item_id) != Status.GENERATING:
            return False
        item = Item(pk=ctx.item_id, project_id=ctx.project_id, status=Status.GENERATING)
        item_version_create(
            item=item,
            author_kind=AuthorKind.LLM,
            reason=gettext_noop("chain of thought generated"),
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
        data = {"job": ctx.job_id, "llm_call": call_id}
        if is_postgres() and ctx.hands_off and ctx.expansion_factor > 1:
            _cot_conclude(ctx, data)
        else:
            transition(item, Status.GENERATED, data=data)
            _after_generated(ctx, item)
            job_finish(job_id=ctx.job_id, ctx=ctx)
    return True


def _cot_conclude(ctx: JobContext, data: dict) -> None:
    """For a hands-off run on PostgreSQL, what ends a CoT in one statement: the seed's move
    to `generated` (its row is locked, so the move happens), its event, its expansion job
    and the end of this job. The same rows as `transition`, `_after_generated` and
    `job_finish`."""
    move_sql, move_params = transition_ctes(
        item_id=ctx.item_id,
        project_id=ctx.project_id,
        from_status=Status.GENERATING,
        to=Status.GENERATED,
        data=data,
    )
    key, job_sql, job_params = _job_insert(ctx.run_id, Job.Kind.EXPAND, ctx.item_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {move_sql}, j AS ({job_sql}), f AS ({_FINISH_SQL}) "  # noqa: S608 (from code)
            "SELECT (SELECT id FROM j)",
            [*move_params, *job_params, *_finish_params(ctx.job_id)],
        )
        (job_id,) = cursor.fetchone()
    jobs_dispatch_on_commit(_job_ids_to_send(key, job_id))


# -- expansion ------------------------------------------------------------------------------


def family_members(*, seed_id: int):
    return Item.objects.filter(family_id=seed_id, kind=ItemKind.SYNTHETIC)


def _family(seed_id: int) -> list[tuple[int, str]]:
    """(id, external id) of the seed's synthetic siblings."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, external_id FROM medcot_item WHERE family_id = %s AND kind = %s",
            [seed_id, ItemKind.SYNTHETIC.value],
        )
        return cursor.fetchall()


def expand_plan(*, ctx: JobContext) -> int | None:
    """How many synthesized questions the family still needs, or None when the job has
    nothing to do. Indexes the seed for near-duplicate checks."""
    # The status was read with the claim, a moment ago.
    if ctx.item_status != Status.GENERATED:
        return None
    dedup.index_item(
        project_id=ctx.project_id,
        item_id=ctx.item_id,
        band_values=dedup.bands(dedup.keys(dedup.question_text(ctx.stem, ctx.options))),
    )
    return max(0, ctx.expansion_factor - 1 - len(_family(ctx.item_id)))


_TEXTS_SQL = (
    "SELECT i.id, i.current_version_id, v.stem, "  # noqa: S608 (names from code)
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + " FROM medcot_item i JOIN medcot_itemversion v ON v.id = i.current_version_id "
    "WHERE i.id {}"
)


def _known_keys(item_ids: set[int]) -> dict[int, np.ndarray | tuple[int, str]]:
    """For each item, the 3-gram keys of its current question text when this process has
    them cached, or else (version id, text) to compute them from: one query, and no
    computing in the database step."""
    if not item_ids:
        return {}
    ids = sorted(item_ids)
    known: dict[int, np.ndarray | tuple[int, str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_TEXTS_SQL.format(ids_in(ids)), ids_params(ids))
        rows = cursor.fetchall()
    for item_id, version_id, stem, *options in rows:
        cached = dedup.candidate_keys.get((item_id, version_id))
        if cached is None:
            options = {k: v for k, v in zip(OPTION_LABELS, options, strict=True) if v}
            known[item_id] = (version_id, dedup.question_text(stem or "", options))
        else:
            known[item_id] = cached
    return known


def _keys_from(known: dict[int, np.ndarray | tuple[int, str]]) -> dict[int, np.ndarray]:
    """`_known_keys` with the missing keys computed (and cached)."""
    keys = {}
    for item_id, value in known.items():
        if isinstance(value, tuple):
            version_id, text = value
            value = dedup.keys(text)
            dedup.candidate_keys.put((item_id, version_id), value)
        keys[item_id] = value
    return keys


def _siblings_insert(items: list[dict], versions: list[dict]) -> tuple[list[int], list]:
    """Give new items their first versions (one version per item, in order) and return the
    items' ids, with what is left to write. On PostgreSQL the ids come from the sequences
    first, so each item is written with its current version already set (the foreign keys
    are checked at commit), together with whatever else goes in with them (see
    `insert_dicts_together`); elsewhere the items are inserted, then their versions, then
    pointed at them."""
    if is_postgres():
        item_ids, version_ids = allocate_ids_many([Item, ItemVersion], len(items))
        for item, version, item_id, version_id in zip(
            items, versions, item_ids, version_ids, strict=True
        ):
            item["id"], item["current_version_id"] = item_id, version_id
            version["id"], version["item_id"] = version_id, item_id
        return item_ids, [(Item, items), (ItemVersion, versions)]
    siblings = Item.objects.bulk_create([Item(**item) for item in items])
    rows = ItemVersion.objects.bulk_create(
        [
            ItemVersion(item_id=item.pk, **version)
            for item, version in zip(siblings, versions, strict=True)
        ]
    )
    for item, version in zip(siblings, rows, strict=True):
        item.current_version = version
    Item.objects.bulk_update(siblings, ["current_version"])
    return [item.pk for item in siblings], []


@dataclass
class FamilyStored:
    created: int
    dropped: int
    run_state: str
    # The family reached its size, and went to first-pass review in the same transaction.
    complete: bool = False


@dataclass
class FamilyPlan:
    """What one reply adds to a family, decided before the transaction that stores it: the
    questions kept (with their 3-gram keys and bands), in order, and those dropped as
    near-duplicates with their twin: an item id, or -(n + 1) for the n-th kept question of the
    same reply."""

    kept: list[tuple[dict, np.ndarray, list[int]]] = field(default_factory=list)
    dropped: list[tuple[dict, int]] = field(default_factory=list)


def signed_questions(questions: list[dict]) -> list[tuple[np.ndarray, list[int]]]:
    """Each question's 3-gram keys and band values."""
    signed = []
    for question in questions:
        text_keys = dedup.keys(dedup.question_text(question["stem"], question["options"]))
        signed.append((text_keys, dedup.bands(text_keys)))
    return signed


def family_candidates(
    *, ctx: JobContext, bands_of: list[list[int]]
) -> tuple[list[list[int]], dict[int, np.ndarray | tuple[int, str]]]:
    """The database half of the near-duplicate check: every question's candidates in the
    project, and what is known of their texts (see `_known_keys`), in two queries."""
    candidates_of = dedup.candidates_many(project_id=ctx.project_id, band_lists=bands_of)
    return candidates_of, _known_keys({i for ids in candidates_of for i in ids})


def family_sort(
    *,
    questions: list[dict],
    signed: list[tuple[np.ndarray, list[int]]],
    candidates_of: list[list[int]],
    known: dict[int, np.ndarray | tuple[int, str]],
    need: int,
) -> FamilyPlan:
    """The computing half: keep each question unless it is a near-duplicate of a candidate
    or of a question kept before it from the same reply, until the family has what it needs.
    No database access, so it runs outside the database threads."""
    texts = _keys_from(known)
    plan = FamilyPlan()
    for question, (grams, band_values), candidate_ids in zip(
        questions, signed, candidates_of, strict=True
    ):
        if len(plan.kept) >= need:
            break
        twin = next(
            (i for i in candidate_ids if dedup.jaccard(grams, texts[i]) >= dedup.THRESHOLD),
            None,
        )
        if twin is None:
            # Questions kept from this same reply are not indexed yet: compare directly and
            # name the twin by its position until its row exists.
            twin = next(
                (
                    -(n + 1)
                    for n, (_q, other, _b) in enumerate(plan.kept)
                    if dedup.jaccard(grams, other) >= dedup.THRESHOLD
                ),
                None,
            )
        if twin is None:
            plan.kept.append((question, grams, band_values))
        else:
            plan.dropped.append((question, twin))
    return plan


def family_plan(*, ctx: JobContext, questions: list[dict], need: int) -> FamilyPlan:
    """`family_candidates` then `family_sort`, in the calling thread."""
    questions = questions[: max(0, need) + MAX_DROPPED_PER_REPLY]
    signed = signed_questions(questions)
    candidates_of, known = family_candidates(ctx=ctx, bands_of=[b for _, b in signed])
    return family_sort(
        questions=questions, signed=signed, candidates_of=candidates_of, known=known, need=need
    )


def family_store(*, ctx: JobContext, call: CallInfo, plan: FamilyPlan) -> FamilyStored:
    """Create the synthetic siblings a plan keeps (no more than the family still needs) and
    log the near-duplicates it dropped; when that completes the family, move it to first-pass
    review and end the job in the same transaction.

    A family's siblings, their first versions, their events and their near-duplicate index
    rows are written by one statement on PostgreSQL: expansion is the pipeline's heaviest
    database step. The rows are the ones `item_version_create` would write for a new item
    (version 1, a `version_created` event)."""
    model = call.record.model
    prompt_version_id = call.prompt_version_id
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        seed = _seed_locked(ctx.item_id)
        if seed is None or seed["status"] != Status.GENERATED:
            return FamilyStored(0, 0, run_state(run_id=ctx.run_id))
        family = _family(ctx.item_id)
        taken = {external_id for _, external_id in family}
        # The plan was made for what the family needed before this transaction; a twin task
        # (a redelivered message) may have added siblings since.
        kept = plan.kept[: max(0, ctx.expansion_factor - 1 - len(taken))]
        dropped = [(q, twin) for q, twin in plan.dropped if twin >= 0 or -twin <= len(kept)]
        external_ids, n = [], 0
        for _ in kept:
            n += 1
            while f"{seed['external_id']}~s{n}" in taken:
                n += 1
            external_ids.append(f"{seed['external_id']}~s{n}")
        now = timezone.now()
        reason = gettext_noop("synthesized from the seed's explanation")
        sibling_ids, writes = _siblings_insert(
            [
                {
                    "project_id": ctx.project_id,
                    "kind": ItemKind.SYNTHETIC.value,
                    "family_id": ctx.item_id,
                    "external_id": external_id,
                    "question_type": seed["question_type"],
                    "specialty": seed["specialty"],
                    "language": seed["language"],
                    "source": seed["source"],
                    "status": Status.GENERATED.value,
                    "status_changed_at": now,
                    "created_at": now,
                }
                for external_id in external_ids
            ],
            [
                {
                    "number": 1,
                    "stem": question["stem"],
                    "answer": question["answer"],
                    "cot": question["cot"],
                    "reasoning": "",
                    "author_kind": AuthorKind.LLM.value,
                    "author_id": None,
                    "reason": reason,
                    "provenance": {
                        "task": "synthesize",
                        "prompt_version": prompt_version_id,
                        "llm_call": call_id,
                        "model": model,
                        "profile": ctx.profile.name,
                        "aspect": question.get("aspect", ""),
                        "seed": ctx.item_id,
                        "job": ctx.job_id,
                    },
                    "created_at": now,
                    **{
                        f"option_{label.lower()}": question["options"].get(label, "")
                        for label in OPTION_LABELS
                    },
                }
                for question, _g, _b in kept
            ],
        )
        events = [
            {
                "project_id": ctx.project_id,
                "item_id": ctx.item_id,
                "kind": "near_duplicate_dropped",
                "reason": f"synthesized question too similar to item {twin_id}",
                "data": {
                    "similar_to": twin_id,
                    "stem": question["stem"][:500],
                    "llm_call": call_id,
                    "job": ctx.job_id,
                },
                "created_at": now,
            }
            for question, twin in dropped
            for twin_id in [sibling_ids[-twin - 1] if twin < 0 else twin]
        ]
        for sibling_id, (question, _g, _b) in zip(sibling_ids, kept, strict=True):
            events.append(
                {
                    "project_id": ctx.project_id,
                    "item_id": sibling_id,
                    "kind": "created",
                    "to_status": Status.GENERATED.value,
                    "reason": gettext_noop("synthesized from its seed"),
                    "data": {
                        "seed": ctx.item_id,
                        "llm_call": call_id,
                        "aspect": question.get("aspect", ""),
                    },
                    "created_at": now,
                }
            )
            events.append(
                {
                    "project_id": ctx.project_id,
                    "item_id": sibling_id,
                    "kind": "version_created",
                    "reason": reason,
                    "data": {"number": 1, "author_kind": AuthorKind.LLM.value},
                    "created_at": now,
                }
            )
        bands = [
            {"project_id": ctx.project_id, "item_id": sibling_id, "band": band, "value": value}
            for sibling_id, (_q, _g, band_values) in zip(sibling_ids, kept, strict=True)
            for band, value in enumerate(band_values)
        ]
        insert_dicts_together([*writes, (Event, events), (NearDuplicateBand, bands)])
        complete = len(taken) + len(sibling_ids) >= ctx.expansion_factor - 1
        if complete:
            family_ids = [ctx.item_id, *(i for i, _ in family), *sibling_ids]
            transition_many(family_ids, Status.GENERATED, Status.FIRST_REVIEW)
            job_finish(job_id=ctx.job_id, ctx=ctx)
    return FamilyStored(len(sibling_ids), len(dropped), run_state(run_id=ctx.run_id), complete)


_SEED_SQL = (
    "SELECT status, external_id, question_type, specialty, language, source "
    "FROM medcot_item WHERE id = %s"
)


def _seed_locked(seed_id: int) -> dict | None:
    """What siblings inherit from their seed, the seed's row locked until the end of the
    transaction (so two jobs cannot fill the same family)."""
    sql = _SEED_SQL
    if connection.features.has_select_for_update:
        sql = _SEED_SQL + " FOR NO KEY UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [seed_id])
        row = cursor.fetchone()
    if row is None:
        return None
    names = ("status", "external_id", "question_type", "specialty", "language", "source")
    return dict(zip(names, row, strict=True))


def family_complete(*, ctx: JobContext, short_by: int = 0, reason: str = "") -> None:
    """The family is as complete as it will get: seed and siblings go to first-pass review."""
    with transaction.atomic():
        seed = _seed_locked(ctx.item_id)
        if seed is not None and seed["status"] == Status.GENERATED:
            ids = [ctx.item_id, *(i for i, _ in _family(ctx.item_id))]
            transition_many(ids, Status.GENERATED, Status.FIRST_REVIEW)
            if short_by:
                Event.objects.create(
                    project_id=ctx.project_id,
                    item_id=ctx.item_id,
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
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT number, parsed, correct FROM generation_reanswerattempt "
            "WHERE item_id = %s ORDER BY number",
            [item_id],
        )
        rows = cursor.fetchall()
    return [AttemptSummary(number=n, parsed=bool(p), correct=bool(c)) for n, p, c in rows]


def reanswer_attempt_store(*, ctx: JobContext, call: CallInfo, **fields) -> tuple[bool, str]:
    """Log the call and append its attempt, atomically. Returns (stored, run state); not
    stored when this attempt number exists already (a redelivered task raced its twin), in
    which case the call alone is logged and the caller re-reads the state. One statement on
    PostgreSQL: this runs once per model call, 87% of a project's calls."""
    attempt = {"item_id": ctx.item_id, "run_id": ctx.run_id, **fields}
    conflict = ("item", "number")
    if is_postgres():
        call_sql, call_params = insert_statement(LLMCall, _call_values(ctx.profile, ctx, call))
        attempt_sql, attempt_params = insert_statement(
            ReanswerAttempt,
            attempt,
            source="c",
            refs={"llm_call_id": "c.id"},
            on_conflict_do_nothing=conflict,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH c AS ({call_sql}), a AS ({attempt_sql}) "  # noqa: S608 (built from code)
                "SELECT (SELECT count(*) FROM a), (SELECT state FROM generation_run WHERE id = %s)",
                [*call_params, *attempt_params, ctx.run_id],
            )
            stored, state = cursor.fetchone()
        return bool(stored), state or ""
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        attempt_id = insert_row(
            ReanswerAttempt, {**attempt, "llm_call_id": call_id}, on_conflict_do_nothing=conflict
        )
        return attempt_id is not None, run_state(run_id=ctx.run_id)


def reanswer_conclude(*, ctx: JobContext, to: str, reason: str, data: dict) -> None:
    """A correct attempt sends the item to consensus; the last strike sends it to the panel;
    the job ends. One statement on PostgreSQL (the move, its event and the job's end).

    Elsewhere the move and the job's end are two steps: if the worker dies between them, the
    redelivered job finds the item moved and just finishes."""
    data = {**data, "job": ctx.job_id}
    if not is_postgres():
        item = Item(pk=ctx.item_id, project_id=ctx.project_id, status=Status.REANSWERING)
        with contextlib.suppress(StaleStatus):
            transition(item, to, reason=reason, data=data)
        job_finish(job_id=ctx.job_id, ctx=ctx)
        return
    move_sql, move_params = transition_ctes(
        item_id=ctx.item_id,
        project_id=ctx.project_id,
        from_status=Status.REANSWERING,
        to=to,
        reason=reason,
        data=data,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {move_sql}, f AS ({_FINISH_SQL} RETURNING 1) SELECT count(*) FROM f",  # noqa: S608
            [*move_params, *_finish_params(ctx.job_id)],
        )
        (finished,) = cursor.fetchone()
    if finished and not ctx.hands_off:
        _run_maybe_finish(ctx.run_id)


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
            # The run's row is locked against a pause or cancel meanwhile. NO KEY, as for every
            # lock on a run here: FOR UPDATE would also block the foreign-key check of each
            # call, attempt and job the workers write for the run until this commits.
            run = (
                Run.objects.select_for_update(no_key=True)
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
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        job = Job.objects.select_for_update(no_key=True).get(pk=ctx.job_id)
        item = Item.objects.get(pk=ctx.item_id)
        # The version records its job, so even a job whose state was lost cannot add a second.
        if job.state != Job.State.RUNNING or item.versions.filter(provenance__job=job.pk).exists():
            job_finish(job_id=ctx.job_id, ctx=ctx)
            return False
        actor_id = ctx.payload.get("actor_id")
        version = item_version_create(
            item=item,
            author_kind=AuthorKind.LLM_GUIDED,
            reason=gettext_noop("CoT regenerated with the panel's guidance"),
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
