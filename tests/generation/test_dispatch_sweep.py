"""A job committed by a process that died before sending its message is sent again by the
sweep (beat, and every worker at start-up); a job whose message went out is left alone."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from kombu import Producer
from kombu.exceptions import OperationalError

from generation import services, tasks
from generation.models import Job, Run
from medcot.celery import app as celery_app
from medcot.lifecycle import Status
from tests.conftest import using_postgres
from tests.factories import ItemFactory


def _age(jobs, seconds: float = 120) -> None:
    """Make queued jobs look as if they were queued `seconds` ago."""
    jobs.update(updated_at=timezone.now() - timedelta(seconds=seconds))


def _start_and_die(django_capture_on_commit_callbacks, project, stage="cot") -> Run:
    """Start a run whose process dies right after the commit: the on-commit dispatch never
    runs."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.run_start(project=project, stage=stage)
    assert callbacks, "run_start dispatches after commit"
    return run


def test_a_dispatched_job_is_marked(sim_profile, project, django_capture_on_commit_callbacks):
    ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(project=project, stage="cot")
    job = Job.objects.get(run=run)
    assert job.state == Job.State.DONE and job.dispatched_at is not None
    _age(Job.objects.all())
    assert services.jobs_redispatch_lost() == 0


def test_the_sweep_sends_a_lost_job_once_its_grace_has_passed(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seeds = [ItemFactory(project=project) for _ in range(3)]
    run = _start_and_die(django_capture_on_commit_callbacks, project)
    jobs = Job.objects.filter(run=run)
    assert [j.state for j in jobs] == [Job.State.QUEUED] * 3
    assert not jobs.filter(dispatched_at__isnull=False).exists()

    # Too recent: the dispatch may still be on its way.
    assert services.jobs_redispatch_lost(grace_seconds=60) == 0
    _age(jobs)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_redispatch_lost(grace_seconds=60) == 3

    for seed in seeds:
        seed.refresh_from_db()
        assert seed.status == Status.GENERATED
    assert all(j.state == Job.State.DONE and j.dispatched_at for j in jobs)
    assert services.jobs_redispatch_lost(grace_seconds=0) == 0


def test_the_sweep_leaves_paused_and_cancelled_runs_alone(
    sim_profile, project, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    paused = _start_and_die(django_capture_on_commit_callbacks, project)
    services.run_pause(run=paused)
    _age(Job.objects.all())
    assert services.jobs_redispatch_lost(grace_seconds=0) == 0

    services.run_cancel(run=paused)
    assert services.jobs_redispatch_lost(grace_seconds=0) == 0


def test_resuming_dispatches_again_and_a_lost_resume_is_swept(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(project=project)
    run = _start_and_die(django_capture_on_commit_callbacks, project)
    Job.objects.filter(run=run).update(dispatched_at=timezone.now())
    services.run_pause(run=run)
    # The resume commits, then its process dies before dispatching.
    with django_capture_on_commit_callbacks(execute=False):
        services.run_resume(run=run)
    job = Job.objects.get(run=run)
    assert job.state == Job.State.QUEUED and job.dispatched_at is None
    _age(Job.objects.filter(pk=job.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_redispatch_lost(grace_seconds=30) == 1
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED


def test_an_unreachable_broker_leaves_the_run_started_and_the_sweep_catches_up(
    sim_profile, project, django_capture_on_commit_callbacks, monkeypatch
):
    seed = ItemFactory(project=project)

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.job_execute_task, "apply_async", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            run = services.run_start(project=project, stage="cot")
    job = Job.objects.get(run=run)
    assert run.state == Run.State.RUNNING
    assert job.state == Job.State.QUEUED and job.dispatched_at is None

    _age(Job.objects.filter(pk=job.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.jobs_redispatch_lost_task() == 1
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED


def test_retrying_a_failed_job_marks_it_for_dispatch_again(
    sim_profile, project, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    run = _start_and_die(django_capture_on_commit_callbacks, project)
    job = Job.objects.get(run=run)
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.ERROR, error="boom", dispatched_at=timezone.now()
    )
    job.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        services.job_retry(job=job)
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.dispatched_at is None


def test_beat_runs_the_sweep_on_the_default_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["llm-jobs-redispatch-lost"]
    assert entry["task"] == tasks.jobs_redispatch_lost_task.name
    # Each task declares its queue; the router sends a message where its task says.
    sweep = tasks.jobs_redispatch_lost_task
    route = celery_app.amqp.router.route(sweep._get_exec_options(), entry["task"], (), {})
    assert route["queue"].name == "default"
    job = tasks.job_execute_task
    llm = celery_app.amqp.router.route(job._get_exec_options(), job.name, (), {})
    assert llm["queue"].name == "llm" == services.LLM_QUEUE


def test_the_sweep_closes_a_run_left_open_with_nothing_to_do(
    sim_profile, project, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    run = _start_and_die(django_capture_on_commit_callbacks, project)
    hands_off = services.run_start(project=project, stage="all")
    # As if the last two jobs had ended together and each had seen the other still active.
    Job.objects.filter(run=run).update(state=Job.State.DONE)
    Job.objects.filter(run=hands_off).update(state=Job.State.DONE)
    assert services.runs_close_finished() == 1
    run.refresh_from_db()
    hands_off.refresh_from_db()
    assert run.state == Run.State.DONE and run.finished_at is not None
    assert hands_off.state == Run.State.RUNNING  # it waits for what reviewers pass on


@pytest.mark.skipif(not using_postgres(), reason="PostgreSQL concurrency; SQLite locks the table")
@pytest.mark.django_db(transaction=True)
def test_two_last_jobs_ending_together_close_their_run(project, sim_profile):
    """The second to end waits for the first's commit (the run row is locked), then sees
    no job left; without the lock each would see the other still running."""
    items = [ItemFactory(project=project) for _ in range(2)]
    run = Run.objects.create(project=project, profile=sim_profile, stage="cot")
    first, second = (
        Job.objects.create(
            run=run, item=item, kind=Job.Kind.COT, key=f"t:{item.pk}", state=Job.State.RUNNING
        )
        for item in items
    )
    first_has_finished = threading.Event()
    errors = []

    def end_first():
        try:
            with transaction.atomic():
                services.job_finish(job_id=first.pk)
                first_has_finished.set()
                time.sleep(0.5)  # still uncommitted while the second ends
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    def end_second():
        try:
            first_has_finished.wait(10)
            services.job_finish(job_id=second.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=end_first), threading.Thread(target=end_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    run.refresh_from_db()
    assert run.state == Run.State.DONE


def test_a_message_redelivered_while_its_run_is_paused_gives_the_job_back(
    sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(project=project)
    run = _start_and_die(django_capture_on_commit_callbacks, project)
    job = Job.objects.get(run=run)
    # The worker that held it died; the run was paused before its message came back.
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, claim="task-1")
    services.run_pause(run=run)
    assert services.job_claim(job_id=job.pk, claim="task-1") is None
    job.refresh_from_db()
    assert (job.state, job.claim) == (Job.State.QUEUED, "")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_resume(run=run)
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED


@pytest.fixture
def redis_broker(settings):
    """Celery publishing to the test Redis for real (no worker consumes): what the broker
    holds can be looked at and tampered with."""
    import redis

    from tests.conftest import redis_url

    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    conf = celery_app.conf
    saved = (conf.broker_url, conf.task_always_eager)
    settings.CELERY_BROKER_URL = redis_url()
    conf.broker_url, conf.task_always_eager = redis_url(), False
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield client
    conf.broker_url, conf.task_always_eager = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    client.flushdb()


def _queued_job_ids(client) -> list[int]:
    return sorted(
        services._message_job_id(json.loads(raw))
        for raw in client.lrange(services.LLM_QUEUE, 0, -1)
    )


def _cot_run(project, django_capture_on_commit_callbacks, seeds: int) -> tuple[Run, list[int]]:
    """A CoT run started over `seeds` new seeds, its messages sent: the run and its jobs."""
    for _ in range(seeds):
        ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(project=project, stage="cot")
    return run, list(Job.objects.filter(run=run).order_by("id").values_list("pk", flat=True))


needs_publish_batch = pytest.mark.skipif(
    not hasattr(Producer, "batch"), reason="kombu before 5.7 has no publish batch"
)


@pytest.mark.services
def test_a_message_lost_with_a_worker_is_sent_again(
    sim_profile, project, redis_broker, django_capture_on_commit_callbacks
):
    run, jobs = _cot_run(project, django_capture_on_commit_callbacks, seeds=3)
    assert _queued_job_ids(redis_broker) == jobs
    assert services.jobs_redispatch_lost(grace_seconds=0, broker_check=True) == 0

    # A worker takes a message off the queue and is killed before recording it as delivered.
    lost = services._message_job_id(json.loads(redis_broker.rpop(services.LLM_QUEUE)))
    # Another one's message was delivered and is waiting for its acknowledgement: still held.
    delivered = redis_broker.rpop(services.LLM_QUEUE)
    redis_broker.hset("unacked", "tag-1", json.dumps([json.loads(delivered), "", "llm"]))
    _age(Job.objects.filter(run=run))
    Job.objects.filter(run=run).update(dispatched_at=timezone.now() - timedelta(seconds=120))

    with django_capture_on_commit_callbacks(execute=True):
        # The beat's sweep notices that the broker holds fewer messages than there are jobs.
        assert services.jobs_redispatch_lost(grace_seconds=30) == 1
    waiting = _queued_job_ids(redis_broker)
    assert lost in waiting and len(waiting) == 2
    assert Job.objects.get(pk=lost).dispatched_at > timezone.now() - timedelta(seconds=30)
    # Sent once: the next sweep finds every job's message.
    assert services.jobs_redispatch_lost(grace_seconds=30, broker_check=True) == 0


@pytest.mark.services
@needs_publish_batch
def test_a_chunk_of_messages_goes_to_redis_in_one_pipeline(
    sim_profile, project, redis_broker, django_capture_on_commit_callbacks, monkeypatch
):
    from redis.client import Pipeline

    executed = []
    real_execute = Pipeline.execute
    monkeypatch.setattr(
        Pipeline,
        "execute",
        lambda self, *a, **kw: executed.append(len(self)) or real_execute(self, *a, **kw),
    )
    run, jobs = _cot_run(project, django_capture_on_commit_callbacks, seeds=5)
    assert executed == [5]
    assert _queued_job_ids(redis_broker) == jobs
    assert not Job.objects.filter(run=run, dispatched_at__isnull=True).exists()


@pytest.mark.services
@needs_publish_batch
def test_a_failed_pipeline_leaves_its_jobs_to_the_sweep(
    sim_profile, project, redis_broker, django_capture_on_commit_callbacks, monkeypatch
):
    import redis
    from redis.client import Pipeline

    def connection_lost(self, *args, **kwargs):
        raise redis.ConnectionError("Connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(Pipeline, "execute", connection_lost)
        run, _jobs = _cot_run(project, django_capture_on_commit_callbacks, seeds=3)
    assert run.state == Run.State.RUNNING
    assert _queued_job_ids(redis_broker) == []
    jobs = Job.objects.filter(run=run)
    assert jobs.count() == 3 and not jobs.exclude(dispatched_at=None).exists()

    _age(jobs)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_redispatch_lost() == 3
    assert _queued_job_ids(redis_broker) == sorted(jobs.values_list("pk", flat=True))


def test_the_broker_is_not_read_when_tasks_run_in_the_process(sim_profile, project):
    ItemFactory(project=project)
    jobs = Job.objects.all()
    assert services._jobs_without_message(jobs, force=True, limit=10) == []
