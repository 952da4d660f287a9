"""A judge run through a real Celery worker process on Redis and PostgreSQL, against the
simulator over HTTP: the judge stage needs nothing of the test process to finish."""

import pytest
import redis

from generation.models import Job, JudgeScore, LLMCall, Run
from generation.services import run_start
from medcot.celery import app as celery_app
from medcot.lifecycle import Status
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


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_judge_stage(project, start_simulator, settings, tmp_path):
    redis.Redis.from_url(redis_url()).flushdb()
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = redis_url()
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url()
    _drop_broker_pools()
    sim = start_simulator(latency_mean=0.05, seed=9, judge_agreement=0.7)
    make_profile(sim.base_url, name="judge", model="sim-judge", structured_output="json_schema")
    items = [
        ItemFactory(
            project=project, status=Status.FIRST_REVIEW, version__cot="Step.\nThe answer is (A)."
        )
        for _ in range(12)
    ]
    proc = _worker("judge-worker", tmp_path, concurrency=8)
    try:
        run = run_start(project=project, stage="judge")
        _wait_for(lambda: Run.objects.get(pk=run.pk).state == Run.State.DONE, 120, "the judge run")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        _celery_conf_restore(saved)
    assert JudgeScore.objects.filter(item__in=items).count() == 12
    assert not Job.objects.filter(run=run).exclude(state=Job.State.DONE).exists()
    calls = LLMCall.objects.filter(run=run, task="judge")
    assert calls.count() == 12 and set(calls.values_list("outcome", flat=True)) == {"ok"}
