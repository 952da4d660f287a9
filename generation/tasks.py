"""Celery tasks for the LLM queue. Thin: take an id, call the pipeline."""

import logging

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings

from generation import services
from generation.client import LocalLimitReached
from generation.pipeline import job_execute

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    name=services.JOB_TASK,
    queue=services.LLM_QUEUE,
)
def job_execute_task(self, job_id: int) -> str:
    """Run one job. Idempotent: a redelivered message (same task id) takes its own claim back
    and continues from what is already stored; any other duplicate finds the job taken."""
    try:
        return job_execute(job_id=job_id, claim=self.request.id or f"local-{job_id}")
    except LocalLimitReached as exc:
        if self.request.is_eager:
            raise
        # Back to the queue, not to `error`: the same message (same claim) runs the job again,
        # from what is already stored, on whichever worker has room.
        log.warning("Job %s goes back to the queue: %s", job_id, exc)
        raise Reject(str(exc), requeue=True) from exc


# On the default queue, not behind the backlog of model calls on the `llm` queue.
@shared_task(name="generation.sweep.jobs_redispatch_lost", queue=settings.CELERY_TASK_DEFAULT_QUEUE)
def jobs_redispatch_lost_task() -> int:
    """Beat: send again the messages of queued jobs whose dispatch was lost, and close runs
    left open with no job to do."""
    services.runs_close_finished()
    return services.jobs_redispatch_lost()
