"""A real Celery worker process on Redis and PostgreSQL sees a run through, even when the
first worker is killed in the middle of it (late acknowledgement + idempotent jobs)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from generation.models import Job, LLMCall
from generation.pipeline import reanswer_enqueue
from generation.services import run_start
from medcot.celery import app as celery_app
from medcot.lifecycle import Status, transition_many
from medcot.models import Item, ItemKind, ItemVersion
from tests.conftest import redis_url
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _worker(
    name: str,
    tmp_path,
    *,
    pool: str = "custom",
    concurrency: int = 8,
    host: str = "%h",
    visibility: int = 3,
) -> subprocess.Popen:
    """A worker process on the `llm` queue: by default on the asyncio pool (`-P custom`,
    generation/aiopool.py), `concurrency` jobs at once, named `name@host`."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=redis_url(),
        CELERY_CUSTOM_WORKER_POOL="generation.aiopool:TaskPool",
        # Unacknowledged messages of a dead worker come back after this many seconds.
        CELERY_VISIBILITY_TIMEOUT=str(visibility),
        # A job the killed worker committed but had no time to dispatch is sent again by the
        # next worker to start, once it is this many seconds old.
        MEDCOT_JOB_DISPATCH_GRACE="2",
        MEDCOT_VAR_DIR=str(tmp_path / name),
        LOG_LEVEL=os.getenv("GEN_WORKER_LOG_LEVEL", "WARNING"),
    )
    argv = ["worker", "-Q", "llm", "-P", pool, "-c", str(concurrency)]
    argv += ["--prefetch-multiplier", "1", "-n", f"{name}@{host}"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    # Look for a dead worker's unacknowledged messages every second (kombu's default sweep
    # runs about every 100 s), so the test need not wait that long.
    code = (
        "from medcot.celery import app\n"
        f"app.conf.broker_transport_options = {{'visibility_timeout': {visibility},"
        " 'unacked_restore_interval': 1, 'unacked_restore_throttle': 1}\n"
        f"app.worker_main({[*argv, '-l', 'warning']!r})\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)


def _drop_broker_pools() -> None:
    # Earlier tests in this process may have made the app's connection pools with another
    # broker URL (Celery reads its configuration lazily and then caches the pools).
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _celery_conf_save() -> dict:
    conf = celery_app.conf
    return {
        "broker_url": conf.broker_url,
        "task_always_eager": conf.task_always_eager,
        "broker_transport_options": conf.broker_transport_options,
    }


def _celery_conf_restore(saved: dict) -> None:
    """Put the app back as the next test expects it: a test that leaves broker_url unset sends
    later tests' tasks to Celery's default broker (AMQP on localhost) instead of failing."""
    for key, value in saved.items():
        setattr(celery_app.conf, key, value)
    _drop_broker_pools()


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("concurrency", [64, 1024])
def test_a_real_worker_finishes_a_run_after_another_was_killed_mid_run(
    project, start_simulator, settings, tmp_path, concurrency
):
    redis.Redis.from_url(redis_url()).flushdb()
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = redis_url()
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url()
    celery_app.conf.broker_transport_options = {"visibility_timeout": 3}
    _drop_broker_pools()
    sim = start_simulator(latency_mean=0.4, accuracy=0.6, seed=5)
    make_profile(sim.base_url, max_in_flight=concurrency, timeout_seconds=10)
    project.expansion_factor = 3
    project.save()
    seeds = [ItemFactory(project=project) for _ in range(8)]

    first = _worker("gen-first", tmp_path, concurrency=concurrency)
    second = None
    try:
        run_start(project=project, stage="all")
        _wait_for(lambda: LLMCall.objects.count() >= 4, 120, "the first calls")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        calls_before = LLMCall.objects.count()
        # A worker starting up takes back the unacknowledged messages older than the
        # visibility timeout; start the replacement once the dead worker's are that old.
        time.sleep(4)
        second = _worker("gen-second", tmp_path, concurrency=concurrency)
        everyone = Item.objects.filter(project=project)
        _wait_for(
            lambda: (
                everyone.count() == 24 and not everyone.exclude(status=Status.FIRST_REVIEW).exists()
            ),
            300,
            "every family in first-pass review",
        )
        ids = list(everyone.values_list("pk", flat=True))
        transition_many(ids, Status.FIRST_REVIEW, Status.REANSWERING)
        reanswer_enqueue(item_ids=ids)
        _wait_for(
            lambda: not everyone.filter(status=Status.REANSWERING).exists(),
            300,
            "every item re-answered",
        )
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)
        _celery_conf_restore(saved)

    assert calls_before < LLMCall.objects.count()
    for seed in seeds:
        # One imported version and one CoT: the killed worker's job was not done twice.
        assert ItemVersion.objects.filter(item=seed).count() == 2
        assert Item.objects.filter(family=seed, kind=ItemKind.SYNTHETIC).count() == 2
    for item in Item.objects.filter(project=project):
        numbers = list(item.reanswer_attempts.values_list("number", flat=True))
        assert numbers == list(range(1, len(numbers) + 1))
        assert item.status in {Status.CONSENSUS, Status.PANEL}
        assert (item.status == Status.CONSENSUS) == item.reanswer_attempts.filter(
            correct=True
        ).exists()
    assert not Job.objects.exclude(state=Job.State.DONE).exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_process_died_before_dispatching_it_is_sent_by_the_next_worker(
    project, start_simulator, settings, tmp_path
):
    redis.Redis.from_url(redis_url()).flushdb()
    sim = start_simulator(latency_mean=0.05, accuracy=1.0, seed=3)
    make_profile(sim.base_url, max_in_flight=4, timeout_seconds=10)
    seeds = [ItemFactory(project=project) for _ in range(3)]
    env = dict(os.environ, DATABASE_URL=_database_url(), CELERY_BROKER_URL=redis_url())
    env["MEDCOT_VAR_DIR"] = str(tmp_path / "starter")
    # Another process starts a run and dies the moment its transaction has committed, before
    # the on-commit dispatch sends a single message.
    code = (
        "import os, django\n"
        "django.setup()\n"
        "from generation import services\n"
        "from medcot.models import Project\n"
        "services.dispatch._dispatch = lambda job_ids: os._exit(9)\n"
        f"services.run_start(project=Project.objects.get(pk={project.pk}), stage='cot')\n"
    )
    starter = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=120)
    assert starter.returncode == 9
    jobs = Job.objects.filter(run__project=project)
    assert jobs.count() == 3
    assert set(jobs.values_list("state", flat=True)) == {Job.State.QUEUED}
    assert not jobs.filter(dispatched_at__isnull=False).exists()
    assert redis.Redis.from_url(redis_url()).llen("llm") == 0

    time.sleep(2.5)  # past the worker's dispatch grace (MEDCOT_JOB_DISPATCH_GRACE=2)
    worker = _worker("gen-after-crash", tmp_path)
    try:
        _wait_for(
            lambda: (
                not Item.objects.filter(pk__in=[s.pk for s in seeds])
                .exclude(status=Status.GENERATED)
                .exists()
            ),
            120,
            "the lost jobs to be sent and done",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert set(jobs.values_list("state", flat=True)) == {Job.State.DONE}
    assert not jobs.filter(dispatched_at__isnull=True).exists()
    for seed in seeds:
        assert ItemVersion.objects.filter(item=seed).count() == 2
