"""What the run page and the item page tell an admin once items have been re-answered: where
the run's items are now, that an open hands-off run is idle, and every attempt of an item."""

import pytest
from django.urls import reverse

from generation.models import ReanswerAttempt, Run
from generation.pipeline import reanswer_enqueue
from generation.services import run_start
from medcot.lifecycle import Status, transition_many
from medcot.models import Item
from tests.factories import ItemFactory
from tests.generation.conftest import make_profile


@pytest.fixture
def logged_in_admin(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def struck_out_run(db, project, start_simulator, django_capture_on_commit_callbacks):
    """A hands-off run whose model is always wrong: every item ends in the panel stage."""
    make_profile(start_simulator(accuracy=0.0).base_url)
    project.expansion_factor = 1
    project.save()
    seeds = [ItemFactory(project=project) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(project=project, stage="all")
    ids = [seed.pk for seed in seeds]
    assert transition_many(ids, Status.FIRST_REVIEW, Status.REANSWERING) == ids
    with django_capture_on_commit_callbacks(execute=True):
        reanswer_enqueue(item_ids=ids)
    assert set(Item.objects.values_list("status", flat=True)) == {Status.PANEL}
    return run


def test_it_shows_where_the_runs_items_are_and_that_the_open_run_is_idle(
    logged_in_admin, struck_out_run, project
):
    url = reverse("generation_run_detail", args=[project.slug, struck_out_run.pk])
    response = logged_in_admin.get(url, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert struck_out_run.state == Run.State.RUNNING
    assert "data-run-idle" in html and 'hx-trigger="every 5s"' in html
    panel_link = f"{reverse('project_detail', args=[project.slug])}?status=panel"
    assert f'href="{panel_link}" data-outcome="panel"' in html
    assert '<span class="label">Awaiting panel</span><span class="count">2</span>' in html
    assert "2 of 2 items" in html and "2 of 2 seeds" in html


def test_a_busy_run_polls_every_second_and_is_not_idle(logged_in_admin, sim_profile, project):
    ItemFactory(project=project)
    run = run_start(project=project, stage="all")  # nothing dispatched: the CoT stays queued
    url = reverse("generation_run_detail", args=[project.slug, run.pk])
    html = logged_in_admin.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in html and "data-run-idle" not in html
    assert "0 of 1 seed" in html and "1 waiting" in html
    assert '<span class="label">Imported</span><span class="count">1</span>' in html


def test_the_runs_list_marks_an_idle_open_run(logged_in_admin, struck_out_run, project):
    response = logged_in_admin.get(reverse("generation_runs", args=[project.slug]))
    assert b"waiting for items" in response.content


def test_the_item_page_lists_every_attempt(logged_in_admin, struck_out_run, project):
    item = Item.objects.filter(project=project).first()
    attempts = list(ReanswerAttempt.objects.filter(item=item).order_by("number"))
    assert len(attempts) == project.reanswer_attempts
    response = logged_in_admin.get(reverse("item_detail", args=[project.slug, item.pk]))
    html = response.content.decode()
    assert 'id="attempts"' in html
    assert html.count('<tr class="attempt"') == len(attempts)
    for attempt in attempts:
        assert f'data-attempt="{attempt.number}"' in html
        assert f"<td>{attempt.variant}</td>" in html
    assert html.count(">wrong</span>") == len(attempts)
    # The model's CoT picked a wrong option too, and the page says so.
    assert "not on the key" in html


def test_the_item_page_has_no_attempts_section_before_re_answering(logged_in_admin, project):
    item = ItemFactory(project=project)
    response = logged_in_admin.get(reverse("item_detail", args=[project.slug, item.pk]))
    assert b'id="attempts"' not in response.content


# -- issue 14: what a run is doing, how long it will take, and why it has nothing to do -------


def _attempt(item, number, *, correct=False):
    return ReanswerAttempt.objects.create(
        item=item,
        number=number,
        variant="direct",
        model="sim-medcot",
        option_order="ABCD",
        raw_answer="B",
        answer="B",
        parsed=True,
        correct=correct,
    )


def test_it_shows_how_many_items_are_on_each_attempt_and_an_eta(
    logged_in_admin, sim_profile, project
):
    from django.utils import timezone

    from generation.models import Job

    items = [ItemFactory(project=project, status=Status.REANSWERING) for _ in range(5)]
    run = run_start(project=project, stage="reanswer")
    _attempt(items[0], 1)
    _attempt(items[1], 1)
    _attempt(items[2], 1)
    _attempt(items[2], 2)
    # Two jobs finished a moment ago: the rate the ETA is measured from.
    done = Job.objects.filter(run=run, item__in=items[3:])
    done.update(state=Job.State.DONE, updated_at=timezone.now())
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timezone.timedelta(seconds=20))
    url = reverse("generation_run_detail", args=[project.slug, run.pk])
    html = logged_in_admin.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "2 items on attempt 2" in html
    assert "1 item on attempt 3" in html
    # Three left at two per twenty seconds.
    assert "About 30 s left at the current rate." in html


def test_a_run_that_finds_nothing_names_the_run_that_holds_the_items(
    logged_in_admin, sim_profile, project
):
    from generation.services import run_pause

    for _ in range(3):
        ItemFactory(project=project, status=Status.REANSWERING)
    ItemFactory(project=project, status=Status.ERROR)
    first = run_pause(run=run_start(project=project, stage="reanswer"))
    second = run_start(project=project, stage="reanswer")
    assert second.state == Run.State.DONE
    assert f"3 items are held by run #{first.pk} (Paused)" in second.message
    assert "1 items are in error" in second.message
    url = reverse("generation_run_detail", args=[project.slug, second.pk])
    assert f"held by run #{first.pk}" in logged_in_admin.get(url).content.decode()


def test_a_cancelled_runs_drafting_seed_goes_back_to_imported(sim_profile, project):
    from generation.models import Job
    from generation.services import job_release, run_cancel
    from medcot.lifecycle import transition

    seed = ItemFactory(project=project)
    run = run_start(project=project, stage="cot")
    job = Job.objects.get(run=run)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, claim="task-1")
    transition(seed, Status.GENERATING)
    run = run_cancel(run=run)
    assert "1 jobs already started finish their current call" in run.message
    job_release(job_id=job.pk)  # the job's call was aborted by the cancel
    seed.refresh_from_db()
    assert seed.status == Status.IMPORTED
    again = run_start(project=project, stage="cot")
    assert Job.objects.filter(run=again, item=seed).exists()
