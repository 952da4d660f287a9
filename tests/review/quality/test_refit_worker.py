"""On PostgreSQL and Redis: the periodic refit runs in a real Celery worker, reading the
verdicts the same function the benchmark times reads, and a second delivery changes nothing."""

import time

import pytest
from celery import Celery

from medcot.lifecycle import Status
from review.models import ConsensusVote
from review.quality.models import QualityFit, VerdictPosterior
from tests.conftest import redis_url
from tests.factories import ItemFactory


def _wait(predicate, worker, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.2)
    raise AssertionError("the worker did not refit in time")


@pytest.mark.services
def test_a_real_worker_refits_and_a_redelivery_changes_nothing(worker, project, expert_a, expert_b):
    items = [ItemFactory(project=project, status=Status.CONSENSUS) for _ in range(3)]
    for item in items:
        for expert, answer in ((expert_a, "A"), (expert_b, "A" if item is not items[2] else "B")):
            ConsensusVote.objects.create(
                item=item,
                version=item.current_version,
                expert=expert,
                answer=answer,
                approve_phrasing=True,
                comment="" if answer == "A" else "B",
            )
    sender = Celery(broker=redis_url(), set_as_current=False)
    sender.send_task("review.tasks.quality_refit", queue="default")
    _wait(lambda: QualityFit.objects.filter(project=project).exists(), worker)
    assert VerdictPosterior.objects.filter(item__in=items).count() == 3
    # Delivered again: the watermark has not moved, so no second fit is written.
    sender.send_task("review.tasks.quality_refit", queue="default")
    time.sleep(2)
    assert QualityFit.objects.filter(project=project).count() == 1
