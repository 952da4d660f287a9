from celery import shared_task
from django.conf import settings

from medcot.imports.service import import_batch_process


@shared_task(
    acks_late=True,
    name="medcot.tasks.import_seed_batch",
    queue=settings.CELERY_TASK_DEFAULT_QUEUE,
)
def import_seed_batch_task(batch_id: int) -> str:
    """Process an uploaded seed file. Idempotent: a finished batch is left as it is."""
    return import_batch_process(batch_id=batch_id).state
