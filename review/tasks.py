from celery import shared_task

from review.services.consensus import consensus_settle_ready
from review.services.first_pass import first_pass_apply_due


@shared_task(name="review.tasks.first_pass_apply_due")
def first_pass_apply_due_task() -> int:
    """Let first-pass submissions whose undo window has passed take effect. Idempotent: an
    applied submission is skipped. Queue visits do the same, so this only matters when nobody
    is reviewing; schedule it every minute with Celery beat."""
    return first_pass_apply_due(limit=1000)


@shared_task(name="review.tasks.consensus_settle_ready")
def consensus_settle_ready_task() -> int:
    """Approve consensus items that already carry enough agreeing votes. Idempotent."""
    return consensus_settle_ready(limit=1000)


@shared_task(name="review.tasks.quality_refit")
def quality_refit_task(force: bool = False) -> int:
    """Refit the verdict aggregation of every project whose verdicts changed (review/quality).
    Idempotent; cheap when nothing changed. Scheduled with Celery beat."""
    from review.quality.refit import quality_refit_all

    return quality_refit_all(force=force)
