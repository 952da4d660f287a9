"""Sending job messages to the broker, and sending again the ones that were lost."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

try:
    from kombu.exceptions import BatchPublishError
except ImportError:  # kombu before 5.7, which has no publish batches
    BatchPublishError = OperationalError

from generation.models import Job, Run
from generation.services.common import log
from medcot.bulk import ids_in, ids_params, is_postgres

# -- runs and jobs --------------------------------------------------------------------------


DISPATCH_CHUNK = 500
# The broker queue of the model calls; the job task declares it (generation/tasks.py).
LLM_QUEUE = "llm"
# The job task, sent by name: the services never import the tasks (which import the pipeline,
# which imports the services). See `_job_task_signature`.
JOB_TASK = "generation.tasks.job"


def _job_task_signature(app, job_id: int):
    """The job task's message. A process that has not loaded its tasks yet (a web process on
    its first dispatch) has Celery import them, as a worker does when it starts, so the task's
    own options apply: its queue, and eager runs in tests. Loading them only here keeps the
    pipeline and the LLM client out of processes that never dispatch."""
    if JOB_TASK not in app.tasks:
        app.loader.import_default_modules()
    return app.signature(JOB_TASK, args=(job_id,))


def _dispatch(job_ids: list[int]) -> None:
    """Send one message per job, and mark the jobs dispatched once their messages are out.
    A process that dies in between leaves a job queued and unmarked: `jobs_redispatch_lost`
    sends it again (a second message for a job is harmless, its claim turns it away)."""
    from medcot.celery import app

    for start in range(0, len(job_ids), DISPATCH_CHUNK):
        chunk = job_ids[start : start + DISPATCH_CHUNK]
        try:
            # One producer for the chunk, its messages sent together (on Redis, one pipeline
            # of LPUSHes instead of a client and a round trip per message) when the broker's
            # transport can batch; otherwise one by one, as before.
            with app.producer_or_acquire() as producer, _publish_batch(producer):
                for job_id in chunk:
                    _job_task_signature(app, job_id).apply_async(producer=producer)
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
    orphans = _jobs_orphaned(cutoff, limit)
    return len(ids) + len(silent) + len(orphans)


# Running jobs of running runs whose lock no worker holds (`dbexec.job_held`: the process that
# ran it died), last claimed before the cutoff.
_ORPHANS_SQL = (
    "SELECT j.id FROM generation_job j JOIN generation_run r ON r.id = j.run_id "
    "WHERE j.state = %s AND r.state = %s AND j.updated_at < %s AND j.id NOT IN ({held}) "
    "ORDER BY j.id LIMIT %s"
)
_HELD_JOBS_SQL = (
    "SELECT l.objid::bigint FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %s AND l.objsubid = 1"
)


def _jobs_orphaned(cutoff, limit: int) -> list[int]:
    """Queue again the running jobs whose worker died and whose message the broker no longer
    holds: a delivery of that message while the job ran did nothing and was acknowledged (the
    job was held), so no message would ever run it again. Those whose message the broker still
    holds are left to it (it delivers them again after its visibility timeout)."""
    from generation.dbexec import JOB_LOCK_SPACE

    if not is_postgres():
        return []
    sql = _ORPHANS_SQL.format(held=_HELD_JOBS_SQL)
    params = [Job.State.RUNNING, Run.State.RUNNING, cutoff, JOB_LOCK_SPACE, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        candidates = [row[0] for row in cursor.fetchall()]
    if not candidates:
        return []
    orphans = _jobs_without_message(Job.objects.filter(pk__in=candidates), force=True, limit=limit)
    if not orphans:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE generation_job SET state = %s, claim = '', dispatched_at = NULL "  # noqa: S608
            f"WHERE id = ANY(%s) AND state = %s AND id NOT IN ({_HELD_JOBS_SQL}) RETURNING id",
            [Job.State.QUEUED, orphans, Job.State.RUNNING, JOB_LOCK_SPACE],
        )
        orphans = [row[0] for row in cursor.fetchall()]
    if orphans:
        log.warning("Re-dispatching %d running job(s) whose worker died", len(orphans))
        _dispatch(orphans)
    return orphans


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
    try:
        if (message.get("headers") or {}).get("task") != JOB_TASK:
            return None
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
