"""A job's message delivered again while the job still runs — Redis's visibility timeout, the
start-up sweep — does nothing: no second call, no item in `error`. One delivered after the
process that ran the job died takes the job over and finishes it.

Real PostgreSQL and the simulator; the second copy of each job runs in another process, as
it would on another worker, with the same claim (the same Celery task id)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from generation import dbexec, services
from generation.models import Job, LLMCall, LLMProfile, Task
from generation.pipeline import job_execute
from generation.prompts import prompt_cache_clear
from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item, ItemVersion
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile
from tests.generation.test_worker import ROOT, _database_url, _wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL"
    ),
]

# Another worker process: takes job locks as a worker does and runs the given jobs (id, claim)
# at once, each on a thread; prints what each copy did.
_OTHER_WORKER = """
import json, sys, django
django.setup()
from concurrent.futures import ThreadPoolExecutor
from generation import dbexec
from generation.pipeline import job_execute
from generation.prompts import prompt_cache_clear
dbexec.job_locks_start()
jobs = json.loads(sys.argv[1])
print("started", flush=True)
with ThreadPoolExecutor(len(jobs)) as pool:
    done = list(pool.map(lambda job: job_execute(job_id=job[0], claim=job[1]), jobs))
print(json.dumps(done), flush=True)
"""


def _other_worker(jobs: list[tuple[int, str]], tmp_path) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=_database_url(), MEDCOT_VAR_DIR=str(tmp_path / "other"))
    return subprocess.Popen(
        [sys.executable, "-c", _OTHER_WORKER, json.dumps(jobs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def job_locks():
    dbexec.job_locks_start()
    yield
    dbexec.job_locks_stop()


@pytest.fixture
def cot_jobs(project, monkeypatch):
    """A CoT run's jobs, queued, with no message sent: the test delivers them itself."""
    monkeypatch.setattr(services, "_dispatch", lambda job_ids: None)
    # Prompt versions cached by an earlier test name rows the flushed database no longer has.
    prompt_cache_clear()

    def make(count: int) -> list[Job]:
        ItemFactory.create_batch(count, project=project)
        run = services.run_start(project=project, stage="cot")
        return list(Job.objects.filter(run=run).order_by("id"))

    return make


def _execute(job_id: int, claim: str) -> str:
    """One delivery of a job's message, on a thread of its own (closing its connection)."""
    try:
        return job_execute(job_id=job_id, claim=claim)
    finally:
        connection.close()


def _cot_versions(item: Item) -> int:
    return ItemVersion.objects.filter(item=item, author_kind=AuthorKind.LLM).count()


def test_a_job_delivered_again_while_it_runs_is_done_once(
    project, start_simulator, cot_jobs, job_locks, tmp_path
):
    sim = start_simulator(latency_mean=2.0, accuracy=1.0, seed=31)
    make_profile(sim.base_url, max_in_flight=16, timeout_seconds=30)
    jobs = cot_jobs(6)
    claims = [(job.pk, f"task-{job.pk}") for job in jobs]

    with ThreadPoolExecutor(2 * len(claims)) as pool:
        first = [pool.submit(_execute, j, c) for j, c in claims]
        _wait_for(lambda: not Job.objects.filter(state=Job.State.QUEUED).exists(), 30, "claims")
        # The same messages again, in this process (Redis gave them back to the same worker)
        # and in another one, while every job waits for its model.
        again_here = [pool.submit(_execute, j, c) for j, c in claims]
        other = _other_worker(claims, tmp_path)
        out, _ = other.communicate(timeout=120)
        results = [f.result(timeout=60) for f in first]
        results_here = [f.result(timeout=60) for f in again_here]

    assert other.returncode == 0
    assert json.loads(out.splitlines()[-1]) == ["skipped"] * len(claims)
    assert results_here == ["skipped"] * len(claims)
    assert results == ["done"] * len(claims)
    # Delivered once more after the job is done: nothing to do either.
    assert job_execute(job_id=claims[0][0], claim=claims[0][1]) == "skipped"

    items = Item.objects.filter(project=project)
    assert not items.filter(status=Status.ERROR).exists()
    assert set(items.values_list("status", flat=True)) == {Status.GENERATED}
    assert all(_cot_versions(item) == 1 for item in items)
    # No copy made a call of its own.
    assert LLMCall.objects.filter(task=Task.COT).count() == len(claims)
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.DONE}


def test_the_job_of_a_worker_that_died_is_taken_over_by_its_redelivery(
    project, start_simulator, cot_jobs, job_locks, tmp_path
):
    # Calls the killed worker starts never return before it dies.
    sim = start_simulator(latency_mean=30.0, accuracy=1.0, seed=32)
    profile = make_profile(sim.base_url, max_in_flight=16, timeout_seconds=60)
    jobs = cot_jobs(3)
    claims = [(job.pk, f"task-{job.pk}") for job in jobs]
    other = _other_worker(claims, tmp_path)
    try:
        _wait_for(lambda: sim.stats()["in_flight"] >= len(claims), 60, "the other's calls")
        running = Job.objects.filter(state=Job.State.RUNNING)
        assert running.count() == len(claims)
        # While it lives, its jobs are its own.
        assert job_execute(job_id=claims[0][0], claim=claims[0][1]) == "skipped"
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(10)
    fast = start_simulator(latency_mean=0.2, accuracy=1.0, seed=34)
    LLMProfile.objects.filter(pk=profile.pk).update(base_url=fast.base_url)

    # The broker delivers the dead worker's messages again (same claims): they take the jobs
    # over. A twin the sweep sent (another claim) may too.
    claims[2] = (claims[2][0], "sweep-twin")
    deadline = time.monotonic() + 10
    results: list[str] = []
    for job_id, claim in claims:
        # The server ends the dead worker's session (and its locks) as soon as it notices.
        while (result := job_execute(job_id=job_id, claim=claim)) == "skipped":
            assert time.monotonic() < deadline, "the dead worker's job lock outlived it"
            time.sleep(0.1)
        results.append(result)
    assert results == ["done"] * len(claims)
    items = Item.objects.filter(project=project)
    assert set(items.values_list("status", flat=True)) == {Status.GENERATED}
    assert all(_cot_versions(item) == 1 for item in items)
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.DONE}


def test_a_copy_that_gave_its_job_back_lets_the_next_delivery_run_it(
    project, start_simulator, cot_jobs, job_locks
):
    """A copy that ends without finishing its job (a local limit: its message goes back to
    the queue) gives the lock back, so the same message, delivered again, runs the job."""
    sim = start_simulator(latency_mean=0.1, accuracy=1.0, seed=33)
    make_profile(sim.base_url, max_in_flight=4, timeout_seconds=30)
    (job,) = cot_jobs(1)
    gate = threading.Event()

    def held_elsewhere():
        with dbexec.job_held(job.pk) as hold:
            assert hold.held is True
            gate.wait(10)

    holder = threading.Thread(target=held_elsewhere)
    holder.start()
    try:
        _wait_for(lambda: job.pk in dbexec._job_locks.locked, 10, "the lock")
        assert job_execute(job_id=job.pk, claim="task") == "skipped"
    finally:
        gate.set()
        holder.join(10)
    assert job_execute(job_id=job.pk, claim="task") == "done"
    assert Item.objects.get(pk=job.item_id).status == Status.GENERATED


def test_the_sweep_requeues_a_running_job_whose_worker_died_and_whose_message_is_gone(
    project, job_locks, redis_broker
):
    """A delivery that found its job running did nothing and was acknowledged; if the worker
    running the job dies later, no message is left to run it. The sweep re-queues such a job
    (its lock is free, the broker holds no message for it) and leaves alone a job whose worker
    lives and one whose message the broker still holds (it delivers that again itself)."""
    make_profile("http://127.0.0.1:9/v1")
    ItemFactory.create_batch(3, project=project)
    run = services.run_start(project=project, stage="cot")
    alive, dead, unacked = Job.objects.filter(run=run).order_by("id")
    redis_broker.delete(services.LLM_QUEUE)
    # The broker still holds the third job's message, delivered and not acknowledged.
    message = {
        "headers": {"task": "generation.tasks.job"},
        "body": json.dumps([[unacked.pk], {}, {}]),
        "properties": {"body_encoding": "utf-8"},
    }
    redis_broker.hset("unacked", "tag-1", json.dumps([message, "", "llm"]))
    Job.objects.filter(run=run).update(
        state=Job.State.RUNNING,
        claim="task",
        updated_at=timezone.now() - timedelta(seconds=120),
        dispatched_at=timezone.now() - timedelta(seconds=120),
    )
    assert dbexec.aio.wait_future(dbexec._job_locks.request("lock", alive.pk)) is True

    assert services.jobs_redispatch_lost(grace_seconds=30) == 1
    states = dict(Job.objects.filter(run=run).values_list("pk", "state"))
    assert states == {
        alive.pk: Job.State.RUNNING,
        dead.pk: Job.State.QUEUED,
        unacked.pk: Job.State.RUNNING,
    }
    queued = [
        services._message_job_id(json.loads(raw))
        for raw in redis_broker.lrange(services.LLM_QUEUE, 0, -1)
    ]
    assert queued == [dead.pk]
    # Sent once: the next sweep finds nothing more to do.
    assert services.jobs_redispatch_lost(grace_seconds=30, broker_check=True) == 0
