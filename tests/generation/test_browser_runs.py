"""Issue 3's scenario in a real browser: an admin starts a hands-off run on demo seeds and
watches its progress update in place while a real Celery worker drafts the CoTs, expands each
seed into its family and re-answers what the reviewers pass on; items the model gets wrong five
times land in the panel stage, and the admin reads their five attempts on the item page.

Playwright drives Debian's Chromium against Django's live server. The worker is a separate
process on Redis and this test's PostgreSQL database; the model is the simulator, set to be
right one time in twenty so that most items strike out. Screenshots go to
test-artifacts/generation/ (or $MEDCOT_TEST_ARTIFACTS/generation/).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from generation.models import Job, ReanswerAttempt, Run
from medcot.celery import app as celery_app
from medcot.imports.formats import ImportOptions
from medcot.imports.service import seed_file_import
from medcot.lifecycle import Status
from medcot.models import Item, ItemKind
from medcot.roles import ADMIN, REVIEWER
from medcot.services import project_create
from review.management.commands.createdemo import BUNDLED_DATA
from review.services import person_create
from review.services.first_pass import first_pass_submit
from tests.conftest import redis_url
from tests.generation.conftest import make_profile
from tests.generation.test_worker import (
    _celery_conf_restore,
    _celery_conf_save,
    _drop_broker_pools,
    _wait_for,
    _worker,
)
from tests.review.test_browser_workflow import PASSWORD, open_as

pytestmark = [
    pytest.mark.browser,
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]

ARTIFACTS = (
    Path(os.getenv("MEDCOT_TEST_ARTIFACTS") or Path(settings.BASE_DIR) / "test-artifacts")
    / "generation"
)
SEEDS = 3
EXPANSION = 3
STRIKES = 5


@pytest.fixture
def llm_worker(settings, tmp_path):
    """A real worker on the `llm` queue; the live server's dispatches go to it through Redis
    (the generation tests otherwise run tasks eagerly on an in-memory broker)."""
    redis.Redis.from_url(redis_url()).flushdb()
    saved = _celery_conf_save()
    settings.CELERY_BROKER_URL = redis_url()
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = redis_url()
    _drop_broker_pools()
    proc = _worker("gen-browser", tmp_path)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    _celery_conf_restore(saved)


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def demo_seeds(project, count: int) -> None:
    """The first records of the MedQA sample that `createdemo` imports, through the importer."""
    path = BUNDLED_DATA / "medqa_usmle" / "medqa_test.jsonl"
    data = b"\n".join(path.read_bytes().splitlines()[:count]) + b"\n"
    result = seed_file_import(
        project=project,
        data=data,
        file_name=path.name,
        options=ImportOptions(format="medqa-jsonl", file_name=path.name),
    )
    assert result.ok, result.errors


@override_settings(REVIEW_UNDO_SECONDS=0)
def test_an_admin_runs_the_demo_seeds_through_to_the_panel(
    browser, live_server, llm_worker, start_simulator
):
    sim = start_simulator(latency_mean=0.25, accuracy=0.05, seed=21)
    make_profile(sim.base_url, max_in_flight=4, timeout_seconds=10)
    project = project_create(
        name="Demo seeds",
        slug="demo-seeds",
        expansion_factor=EXPANSION,
        reanswer_attempts=STRIKES,
        # Every pass must move its item on: no item waits for a second reviewer here.
        double_review_percent=0,
    )
    demo_seeds(project, SEEDS)
    person_create(username="lead", password=PASSWORD, roles=[ADMIN])
    doc = person_create(username="doc", password=PASSWORD, roles=[REVIEWER])

    lead = open_as(browser, live_server, "lead")
    lead.goto(f"{live_server.url}/projects/{project.slug}/")
    lead.get_by_role("link", name="LLM runs").click()
    lead.wait_for_url(f"**/projects/{project.slug}/runs/")
    shot(lead, "01-runs-empty")
    # The whole pipeline is the default choice; it keeps the run open for re-answering.
    assert lead.locator("#id_stage").input_value() == "all"
    lead.get_by_role("button", name="Start run").click()
    lead.wait_for_url(re.compile(r".*/runs/\d+/$"))
    run = Run.objects.get(project=project)
    assert run.hands_off and run.created_by.username == "lead"

    # From here on the run page is never reloaded (a reload would drop these globals): htmx
    # swaps the progress partial in place.
    lead.evaluate(
        """() => {
            window.__sameDocument = true;
            window.__swaps = 0;
            document.body.addEventListener('htmx:afterSettle', () => {
                window.__swaps += 1;
            });
        }"""
    )
    lead.locator("#run-progress [data-stage=cot]").wait_for()
    shot(lead, "02-run-started")
    # The CoT and expansion bars fill up as the worker drafts and expands.
    lead.wait_for_function(
        """([seeds]) => {
            const done = (kind) => {
                const el = document.querySelector(
                    `#run-progress [data-stage=${kind}] .stage-count`);
                return el && el.textContent.trim().startsWith(`${seeds} of ${seeds} `);
            };
            return done('cot') && done('expand');
        }""",
        arg=[SEEDS],
        timeout=30_000,
    )
    # Every family is complete and waits for first-pass review; the run stays open for it.
    everyone = Item.objects.filter(project=project)
    _wait_for(lambda: not everyone.exclude(status=Status.FIRST_REVIEW).exists(), 15, "first review")
    assert everyone.filter(kind=ItemKind.SYNTHETIC).exists()
    lead.locator("#run-progress [data-run-idle]").wait_for(timeout=10_000)
    shot(lead, "03-run-waiting-for-reviewers")

    # A reviewer passes the items in two sittings (through the review service, standing in for
    # the queue page); each pass hands the item to the run that is still open.
    items = list(everyone.order_by("id"))
    half = len(items) // 2
    for number, batch in enumerate((items[:half], items[half:])):
        for item in batch:
            first_pass_submit(
                item=item,
                reviewer=doc,
                relevance=True,
                correctness=True,
                sufficiency=True,
                action="pass",
                # The simulated model sometimes concludes off the key, and the stand-in reviewer
                # passes at machine speed: it confirms both, as a reviewer would have to.
                confirm_mismatch=True,
                confirm_fast=True,
            )
        lead.locator("#run-progress [data-stage=reanswer]").wait_for(timeout=15_000)
        if number == 0:
            # The page shows the first sitting's items before the second sitting starts, so
            # the count is seen to change in place however fast the worker is.
            lead.wait_for_function(
                """([n]) => {
                    const el = document.querySelector(
                        '#run-progress [data-stage=reanswer] .stage-count');
                    return el && el.textContent.trim().startsWith(`${n} of ${n} `);
                }""",
                arg=[half],
                timeout=30_000,
            )
            first_count = lead.locator(
                "#run-progress [data-stage=reanswer] .stage-count"
            ).text_content()
            shot(lead, "04-run-reanswering")
    total = len(items)
    lead.wait_for_function(
        """([total]) => {
            const el = document.querySelector('#run-progress [data-stage=reanswer] .stage-count');
            return el && el.textContent.trim().startsWith(`${total} of ${total} `);
        }""",
        arg=[total],
        timeout=45_000,
    )
    lead.locator("#run-progress [data-run-idle]").wait_for(timeout=10_000)
    assert lead.evaluate("window.__sameDocument") is True
    # The count changed in the same document: htmx swapped it in place, no reload.
    last_count = lead.locator("#run-progress [data-stage=reanswer] .stage-count").text_content()
    assert first_count.strip().startswith(f"{half} of {half} ")
    assert last_count.strip().startswith(f"{total} of {total} ")
    # Keyboard focus survives the swaps: a link focused now is focused after the next one.
    lead.locator("#run-progress a[data-outcome=panel]").focus()
    swaps = lead.evaluate("window.__swaps")
    lead.wait_for_function("([n]) => window.__swaps > n", arg=[swaps], timeout=10_000)
    assert lead.evaluate("document.activeElement.dataset.outcome") == "panel"
    shot(lead, "05-run-done")

    # Every item ended in consensus (a correct attempt) or the panel (five wrong ones).
    assert not everyone.exclude(status__in=[Status.CONSENSUS, Status.PANEL]).exists()
    struck_out = list(everyone.filter(status=Status.PANEL).order_by("id"))
    assert struck_out, "at 5% accuracy some item must strike out five times"
    for item in struck_out:
        attempts = list(ReanswerAttempt.objects.filter(item=item).order_by("number"))
        assert [a.number for a in attempts] == list(range(1, STRIKES + 1))
        assert not any(a.correct for a in attempts)
    for item in everyone.filter(status=Status.CONSENSUS):
        attempts = list(ReanswerAttempt.objects.filter(item=item).order_by("number"))
        assert attempts[-1].correct and not any(a.correct for a in attempts[:-1])
    # The run page's counts are the database's.
    panel = lead.locator("#run-progress a[data-outcome=panel]")
    assert panel.locator(".count").inner_text() == str(len(struck_out))
    jobs = Job.objects.filter(run=run).count()

    # The admin follows the panel count to the struck-out items and opens one.
    panel.click()
    lead.wait_for_url("**?status=panel")
    target = struck_out[0]
    lead.locator(f"a[href$='/items/{target.pk}/']").click()
    lead.wait_for_url(f"**/items/{target.pk}/")
    rows = lead.locator("#attempts tr.attempt")
    assert rows.count() == STRIKES
    stored = list(ReanswerAttempt.objects.filter(item=target).order_by("number"))
    for row, attempt in zip(rows.all(), stored, strict=True):
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        assert cells[0] == str(attempt.number)
        assert cells[1] == attempt.variant
        assert cells[4].startswith(attempt.answer)
        assert cells[5] == "wrong"
    assert len({a.variant for a in stored}) > 1, "the attempts vary their prompts"
    lead.locator("#attempts summary").first.click()
    assert "[simulated]" in lead.locator("#attempts details").first.inner_text()
    shot(lead, "07-item-attempts")

    lead.goto(f"{live_server.url}/projects/{project.slug}/runs/")
    row = lead.locator(f"tr:has(a[href$='/runs/{run.pk}/'])")
    assert f"{jobs} / {jobs}" in row.inner_text() and "waiting for items" in row.inner_text()
    shot(lead, "06-runs-list")
