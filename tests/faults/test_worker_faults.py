"""A real worker on a private Redis runs CoT generation against a simulator that answers one
request in five with a fault (429, 500, timeout, malformed), and Redis is restarted in the
middle. The run completes: every item is accounted for exactly once — generated, or in `error`
with the reason — none duplicated, none stuck."""

import signal
import time

import pytest

from generation.models import Job, LLMCall, Run
from generation.services import run_start
from medcot.celery import app as celery_app
from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item, ItemVersion
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile
from tests.generation.test_worker import (
    _celery_conf_restore,
    _celery_conf_save,
    _drop_broker_pools,
    _wait_for,
    _worker,
)
from tests.redis_server import RedisServer, needs_redis_server

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    needs_redis_server,
]

ITEMS = 16


@pytest.mark.parametrize("concurrency", [64, 1024])
def test_a_run_survives_llm_faults_and_a_redis_restart(
    project, start_simulator, monkeypatch, tmp_path, settings, concurrency
):
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    # Durable: the messages queued before the restart must still be there after it.
    server = RedisServer(redis_dir, durable=True)
    url = server.url
    # The worker helper reads the broker from here; the run's dispatch uses the same Redis.
    monkeypatch.setenv("MEDCOT_TEST_REDIS_URL", url)
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = url
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = {"visibility_timeout": 3}
    _drop_broker_pools()
    sim = start_simulator(
        latency_mean=0.2,
        rate_429=0.05,
        rate_500=0.05,
        rate_timeout=0.05,
        timeout_hold=3.0,
        rate_malformed=0.05,
        seed=11,
    )
    make_profile(sim.base_url, max_in_flight=concurrency, timeout_seconds=1.5, max_retries=3)
    items = [ItemFactory(project=project) for _ in range(ITEMS)]

    server.start()
    # Stands in for the process supervisor (docker-compose's `restart: unless-stopped`):
    # Celery's worker usually reconnects by itself, but on a broker restart it can also stop
    # with kombu's "Unrecoverable error" (seen in CI). Then a new worker starts and takes back
    # the dead one's unacknowledged messages, which a starting worker does once they are older
    # than the visibility timeout (3 s here).
    workers = [_worker("faults-0", tmp_path, concurrency=concurrency)]

    def supervised(condition):
        def check():
            if workers[-1].poll() is not None:
                time.sleep(4)
                workers.append(_worker(f"faults-{len(workers)}", tmp_path, concurrency=concurrency))
            return condition()

        return check

    try:
        run = run_start(project=project, stage="cot")
        _wait_for(lambda: LLMCall.objects.count() >= 3, 60, "the first calls")
        server.stop()
        time.sleep(2)
        server.start()
        everyone = Item.objects.filter(pk__in=[i.pk for i in items])
        _wait_for(
            supervised(
                lambda: (
                    not everyone.filter(status__in=[Status.IMPORTED, Status.GENERATING]).exists()
                )
            ),
            150,
            "every item to leave generation",
        )
        _wait_for(
            supervised(lambda: Run.objects.get(pk=run.pk).state == Run.State.DONE),
            30,
            "the run to finish",
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
        server.stop()
        _celery_conf_restore(saved)

    jobs = Job.objects.filter(run=run)
    assert jobs.count() == ITEMS
    assert not jobs.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exists()
    faults = LLMCall.objects.exclude(error="").count()
    for item in Item.objects.filter(pk__in=[i.pk for i in items]):
        llm_versions = ItemVersion.objects.filter(item=item, author_kind=AuthorKind.LLM).count()
        if item.status == Status.ERROR:
            assert item.status_reason, f"item {item.pk} is in error without a reason"
            assert llm_versions == 0
        else:
            assert item.status in {Status.GENERATED, Status.FIRST_REVIEW}, item.status
            assert llm_versions == 1, f"item {item.pk} has {llm_versions} CoT versions"
    print(
        f"faults test: {ITEMS} items, {LLMCall.objects.count()} LLM calls, "
        f"{faults} failed calls, "
        f"{Item.objects.filter(status=Status.ERROR).count()} items in error, "
        f"{len(workers) - 1} worker restart(s)"
    )
