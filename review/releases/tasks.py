from celery import shared_task
from django.conf import settings

from review.releases.services import release_build


@shared_task(
    acks_late=True, name="releases.build_release", queue=settings.CELERY_TASK_DEFAULT_QUEUE
)
def build_release_task(release_id: int) -> str:
    """Build a release. Idempotent: a built release, or one another worker is building, is left
    as it is."""
    return release_build(release_id=release_id).state
