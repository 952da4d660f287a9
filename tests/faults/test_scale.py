"""Thousands of calls in flight on the asyncio pool, and one provider-wide limit across worker
groups on different hosts: real worker processes, PostgreSQL, Redis and the simulator.

- C = 2,048 with a short latency: no item ends in `error` (the simulator sends no faults, so
  there is no model-side cause), no lease is left in Redis, and a worker holds its calls
  without a thread each. The visibility timeout is 3 s, so the messages of jobs still waiting
  are delivered again and again; those deliveries do nothing (one call per item).
- Two worker groups named for two hosts, one Redis: the simulator never sees more calls at
  once than the profile's limit, and both groups did calls."""

import signal
import time
from pathlib import Path

import pytest
import redis
from django.db.models import Count

from generation.models import Job, LLMCall, LLMProfile
from generation.services import run_start
from medcot.celery import app as celery_app
from medcot.lifecycle import Status
from medcot.models import Item
from tests.conftest import redis_url
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile
from tests.generation.test_worker import (
    _celery_conf_restore,
    _celery_conf_save,
    _drop_broker_pools,
    _wait_for,
    _worker,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# As the kill tests: a job's message is delivered again every few seconds while the job waits
# for its place or its model, and each such delivery finds the job held and does nothing.
VISIBILITY = 3


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def broker(settings):
    """The test Redis as the broker of this process and of the workers it starts."""
    redis.Redis.from_url(redis_url()).flushdb()
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = redis_url()
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url()
    celery_app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY}
    _drop_broker_pools()
    yield redis.Redis.from_url(redis_url())
    _celery_conf_restore(saved)


def _stop(workers) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(60)
        except Exception:
            worker.kill()


def _ready(count: int) -> None:
    """Start the run once every worker is up: a starting worker sweeps for lost messages, and a
    message that is between the queue and the unacknowledged set at that moment is sent again
    with the same task id (a known race of the sweep, left to its owner)."""
    _wait_for(lambda: len(celery_app.control.ping(timeout=0.5)) >= count, 120, "the workers")


def _leases(conn, profile: LLMProfile) -> int:
    key = f"medcot:llm:inflight:{profile.pk}"
    deadline = time.monotonic() + 5
    while (held := conn.zcard(key)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return held


def test_two_thousand_calls_in_flight_lose_no_item_and_leak_no_lease(
    project, start_simulator, broker, tmp_path
):
    items = 2200
    sim = start_simulator(latency_mean=2.0, accuracy=1.0, seed=21)
    profile = make_profile(sim.base_url, max_in_flight=2048, timeout_seconds=60)
    ItemFactory.create_batch(items, project=project)
    workers = [
        _worker(f"c2048-{n}", tmp_path, concurrency=1024, host=f"host-{n}", visibility=VISIBILITY)
        for n in range(2)
    ]
    peak_threads = 0
    try:
        _ready(len(workers))
        run = run_start(project=project, stage="cot")
        everyone = Item.objects.filter(project=project)

        def finished():
            nonlocal peak_threads
            peak_threads = max(peak_threads, *(_threads(w.pid) for w in workers))
            return not everyone.filter(status__in=[Status.IMPORTED, Status.GENERATING]).exists()

        _wait_for(finished, 600, "every item to leave generation")
    finally:
        _stop(workers)
    stats = sim.stats()
    counts = dict(everyone.values_list("status").annotate(n=Count("id")))
    print(
        f"C=2048: {items} items, {LLMCall.objects.count()} calls, simulator peak in flight "
        f"{stats['max_in_flight']}, worker peak threads {peak_threads}, statuses {counts}"
    )
    assert counts == {Status.GENERATED: items}
    assert not Job.objects.filter(run=run).exclude(state=Job.State.DONE).exists()
    assert not LLMCall.objects.exclude(error="").exists()
    # One call per item: no message delivered again while its job ran made a call of its own.
    assert LLMCall.objects.count() == items
    assert _leases(broker, profile) == 0
    assert stats["max_in_flight"] <= 2048
    # Hundreds of calls at once, each without a thread of its own.
    assert stats["max_in_flight"] >= 300
    assert peak_threads < 64


def test_worker_groups_on_two_hosts_share_one_limit(project, start_simulator, broker, tmp_path):
    limit = 24
    sim = start_simulator(latency_mean=0.3, accuracy=1.0, seed=22)
    profile = make_profile(sim.base_url, max_in_flight=limit, timeout_seconds=30)
    ItemFactory.create_batch(240, project=project)
    # Two groups of two workers, as on two machines: each group alone could hold 128 calls.
    workers = [
        _worker(
            f"group-{host}-{n}",
            tmp_path,
            concurrency=32,
            host=f"host-{host}",
            visibility=VISIBILITY,
        )
        for host in ("a", "b")
        for n in range(2)
    ]
    try:
        _ready(len(workers))
        run_start(project=project, stage="cot")
        everyone = Item.objects.filter(project=project)
        _wait_for(
            lambda: not everyone.exclude(status=Status.GENERATED).exists(),
            300,
            "every item generated",
        )
        replies = celery_app.control.inspect(timeout=5).stats() or {}
    finally:
        _stop(workers)
    done_by_host: dict[str, int] = {}
    for name, stats in replies.items():
        host = name.split("@", 1)[1]
        done = stats.get("total", {}).get("generation.tasks.job", 0)
        done_by_host[host] = done_by_host.get(host, 0) + done
    peak = sim.stats()["max_in_flight"]
    print(f"two hosts, limit {limit}: simulator peak {peak}, jobs by host {done_by_host}")
    assert peak <= limit
    assert peak >= limit // 2  # the limit, not something else, bounded the calls
    assert set(done_by_host) == {"host-a", "host-b"}
    assert all(done_by_host.values())
    assert sum(done_by_host.values()) >= 240
    assert _leases(broker, profile) == 0
