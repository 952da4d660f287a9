"""The machine half against a simulator that behaves like real servers, on a real Celery worker,
Redis and PostgreSQL (issue 14): structured output in json_schema and none modes makes
synthetic questions; a server that ignores the mode asked for makes none, and the run page and
`run_pipeline --wait` say so and exit non-zero; empty replies are retried as faults; retry
makes new calls; cancel returns every item it held."""

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from generation import services
from generation.models import UNUSABLE_PREFIX, Job, LLMCall, LLMProfile, ReanswerAttempt, Run
from generation.pipeline import reanswer_enqueue
from medcot.celery import app as celery_app
from medcot.lifecycle import Status, transition_many
from medcot.models import Item, ItemKind
from tests.conftest import redis_url
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile
from tests.generation.test_worker import (
    ROOT,
    _celery_conf_restore,
    _celery_conf_save,
    _database_url,
    _drop_broker_pools,
    _wait_for,
    _worker,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# Distinct option sets, so the simulator (which tells items apart by their options) sees
# different seeds rather than one seed many times.
SEED_OPTIONS = [
    {"option_a": f"Aspirin {n}", "option_b": f"Heparin {n}", "option_c": f"Statin {n}"}
    for n in range(20)
]


@pytest.fixture
def llm_worker(settings, tmp_path):
    """A real worker process on the `llm` queue; this process sends it jobs through Redis."""
    redis.Redis.from_url(redis_url()).flushdb()
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = redis_url()
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url()
    _drop_broker_pools()
    worker = _worker("gen-h14", tmp_path)
    yield worker
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    _celery_conf_restore(saved)


def _seeds(project, n: int) -> list[Item]:
    return [ItemFactory(project=project, version=SEED_OPTIONS[i]) for i in range(n)]


def _run_pipeline(project, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`manage.py run_pipeline` as a person runs it, in its own process."""
    env = dict(
        os.environ,
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=redis_url(),
        MEDCOT_VAR_DIR=os.environ.get("MEDCOT_VAR_DIR", str(ROOT / "var" / "test")),
    )
    argv = [sys.executable, "manage.py", "run_pipeline", "--project", project.slug, *args]
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _pass_everything_on(project) -> list[int]:
    """A stand-in for the reviewers: every item in first-pass review is passed."""
    ids = list(
        Item.objects.filter(project=project, status=Status.FIRST_REVIEW).values_list(
            "pk", flat=True
        )
    )
    transition_many(ids, Status.FIRST_REVIEW, Status.REANSWERING)
    reanswer_enqueue(item_ids=ids)
    return ids


@pytest.mark.parametrize("mode", ["json_schema", "none"])
def test_the_machine_half_makes_synthetic_questions_in_json_schema_and_in_none_mode(
    mode, project, start_simulator, llm_worker, admin_user, client
):
    # A server that honours only this mode (none: it ignores response_format altogether), and
    # a profile set to it, as "Test endpoint" would set it. Some replies come back empty.
    sim = start_simulator(structured=mode, accuracy=0.7, rate_empty=0.1, seed=21)
    make_profile(sim.base_url, structured_output=mode, max_in_flight=8, timeout_seconds=10)
    project.expansion_factor = 4
    project.save()
    seeds = _seeds(project, 6)

    done = _run_pipeline(project, "--stage", "all", "--wait", "--interval", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    synthetic = Item.objects.filter(project=project, kind=ItemKind.SYNTHETIC)
    assert synthetic.count() == 6 * 3
    assert "Expansion: 6 seeds, 18 of 18 questions" in done.stdout
    replies = LLMCall.objects.filter(task="synthesize", outcome=LLMCall.Outcome.OK)
    if mode == "json_schema":
        # Bare JSON objects, with options as the schema's list.
        assert all(r.reply.lstrip().startswith("{") for r in replies)
    else:
        assert all("```json" in r.reply for r in replies)
    for seed in seeds:
        assert Item.objects.filter(family=seed, kind=ItemKind.SYNTHETIC).count() == 3

    # The run page says what each stage made.
    run = Run.objects.get(project=project)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.slug}/runs/{run.pk}/").content.decode()
    assert "6 seeds expanded: 18 of 18 questions" in page
    assert "data-short" not in page

    # Reviewers pass everything; the model re-answers; every item concludes.
    ids = _pass_everything_on(project)
    _wait_for(
        lambda: not Item.objects.filter(pk__in=ids, status=Status.REANSWERING).exists(),
        300,
        "every item re-answered",
    )
    assert not Item.objects.filter(project=project, status=Status.ERROR).exists()
    # Empty replies were faults, retried: logged as failed tries, never an attempt.
    empty = LLMCall.objects.filter(outcome=LLMCall.Outcome.TRANSIENT, error__contains="empty")
    gateway = LLMCall.objects.filter(
        outcome=LLMCall.Outcome.TRANSIENT, error__contains="error page"
    )
    assert empty.exists() and gateway.exists()
    assert not ReanswerAttempt.objects.filter(reply__in=["", " "]).exists()
    assert not ReanswerAttempt.objects.filter(reply__contains="Bad Gateway").exists()
    assert set(Item.objects.filter(pk__in=ids).values_list("status", flat=True)) <= {
        Status.CONSENSUS,
        Status.PANEL,
    }


def test_a_server_ignoring_the_mode_makes_no_questions_and_everyone_is_told(
    project, start_simulator, llm_worker, admin_user, client
):
    """The issue's server: it ignores the mode the profile asks for, so every synthesis reply
    is an answer to the seed. The strict prompt is tried once per seed; then the stage is
    short, the run page and the terminal say so, and run_pipeline exits non-zero. Testing
    the endpoint finds the mode that works, and a second run makes the questions."""
    sim = start_simulator(structured="json_object", accuracy=0.7, seed=22)
    profile = make_profile(sim.base_url, structured_output="json_schema", timeout_seconds=10)
    project.expansion_factor = 4
    project.save()
    _seeds(project, 4)

    done = _run_pipeline(project, "--stage", "all", "--wait", "--interval", "0.3")
    assert done.returncode != 0
    assert "Expansion: 4 seeds, 0 of 12 questions" in done.stdout
    assert "8 replies held no questions" in done.stdout
    assert "SHORT: under 50% of what was expected" in done.stdout
    assert "fell short" in done.stderr
    unusable = LLMCall.objects.filter(task="synthesize", error__startswith=UNUSABLE_PREFIX)
    # One default and one strict call per seed, then the family is counted as failed.
    assert unusable.count() == 8
    assert unusable.filter(prompt_version__variant="strict").count() == 4

    run = Run.objects.get(project=project)
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.slug}/runs/{run.pk}/").content.decode()
    assert "4 seeds expanded: 0 of 12 questions" in page
    assert "8 replies held no questions" in page
    assert "data-short" in page and "Less than 50% of what was expected." in page
    examples = client.get(f"/projects/{project.slug}/runs/{run.pk}/replies/").content.decode()
    assert examples.count('class="card reply-example"') == 8
    assert "no JSON object" in examples

    # "Test endpoint" finds the mode this server honours and sets it.
    result = services.profile_test(profile=profile)
    assert result["ok"] and result["structured_output"] == "json_object"
    profile.refresh_from_db()
    assert profile.structured_output == "json_object"


def test_retry_resets_the_failure_counters_and_makes_new_calls(
    project, start_simulator, llm_worker
):
    """An item pushed to `error` by unparseable replies: Retry moves it back and the worker
    calls the model again (not error → reanswering → error in the same second)."""
    broken = start_simulator(rate_malformed=1.0, seed=23)
    profile = make_profile(broken.base_url, timeout_seconds=10)
    item = ItemFactory(project=project, status=Status.REANSWERING, version=SEED_OPTIONS[0])
    run = services.run_start(project=project, stage="reanswer")
    _wait_for(lambda: Job.objects.get(run=run).state == Job.State.ERROR, 120, "the job to fail")
    item.refresh_from_db()
    assert item.status == Status.ERROR
    attempts_before = ReanswerAttempt.objects.filter(item=item).count()
    assert attempts_before == project.reanswer_attempts + services.UNPARSED_ALLOWANCE

    healthy = start_simulator(accuracy=1.0, seed=24)
    LLMProfile.objects.filter(pk=profile.pk).update(base_url=healthy.base_url)
    time.sleep(services.RUN_FACTS_SECONDS + 0.5)  # the worker's cache of the run's profile
    services.job_retry(job=Job.objects.get(run=run))
    _wait_for(lambda: Item.objects.get(pk=item.pk).status == Status.CONSENSUS, 120, "a new answer")
    attempts = list(ReanswerAttempt.objects.filter(item=item).order_by("number"))
    assert len(attempts) == attempts_before + 1
    assert attempts[-1].correct and attempts[-1].parsed
    assert Job.objects.get(run=run).state == Job.State.DONE


def test_cancel_returns_every_held_item_and_a_later_run_picks_them_up(
    project, start_simulator, llm_worker
):
    sim = start_simulator(latency_mean=1.0, accuracy=1.0, seed=25)
    make_profile(sim.base_url, max_in_flight=2, timeout_seconds=10)
    # The worker's 8 threads claim 8 jobs; 12 stay queued.
    seeds = _seeds(project, 20)
    run = services.run_start(project=project, stage="cot")
    _wait_for(
        lambda: Item.objects.filter(project=project, status=Status.GENERATING).count() >= 1,
        60,
        "CoTs in flight",
    )
    run = services.run_cancel(run=run)
    assert run.state == Run.State.CANCELLED
    assert "returned for a later run to pick up" in run.message
    assert "12 seeds await a CoT" in run.message
    _wait_for(
        lambda: not Job.objects.filter(run=run, state=Job.State.RUNNING).exists(),
        60,
        "calls in flight to end",
    )
    statuses = set(Item.objects.filter(project=project).values_list("status", flat=True))
    assert statuses <= {Status.IMPORTED, Status.GENERATED}
    # The queued ones, and any whose call had not begun when the cancel came.
    waiting = Item.objects.filter(project=project, status=Status.IMPORTED).count()
    drafted = Item.objects.filter(project=project, status=Status.GENERATED).count()
    assert waiting >= 12 and waiting + drafted == 20

    again = services.run_start(project=project, stage="cot")
    assert Job.objects.filter(run=again).count() == waiting
    _wait_for(
        lambda: Item.objects.filter(project=project, status=Status.GENERATED).count() == len(seeds),
        120,
        "the second run to draft the rest",
    )
