"""Celery tasks for the LLM queue. Thin: take an id, call the pipeline."""

from celery import shared_task

from generation import services
from generation.pipeline import job_execute


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="generation.tasks.job")
def job_execute_task(self, job_id: int) -> str:
    """Run one job. Idempotent: a redelivered message (same task id) takes its own claim back
    and continues from what is already stored; any other duplicate finds the job taken."""
    return job_execute(job_id=job_id, claim=self.request.id or f"local-{job_id}")


# Named outside `generation.tasks.*` so it goes to the default queue, not behind the backlog of
# model calls on the `llm` queue (see medcot/celery.py).
@shared_task(name="generation.sweep.jobs_redispatch_lost")
def jobs_redispatch_lost_task() -> int:
    """Beat: send again the messages of queued jobs whose dispatch was lost, and close runs
    left open with no job to do."""
    services.runs_close_finished()
    return services.jobs_redispatch_lost()
