"""The admin's run pages: list and start, detail with htmx progress, controls, retry."""

import pytest
from django.urls import reverse

from generation.models import Job, PromptVersion, Run
from generation.prompts import prompt_version_current
from generation.services import run_start
from medcot.lifecycle import Status
from tests.factories import ItemFactory


@pytest.fixture
def logged_in_admin(client, admin_user):
    client.force_login(admin_user)
    return client


def test_it_lists_runs_and_offers_the_start_form(logged_in_admin, sim_profile, project):
    run_start(project=project, stage="cot")
    response = logged_in_admin.get(reverse("generation_runs", args=[project.slug]))
    assert response.status_code == 200
    assert b"Start a run" in response.content
    assert f"#{Run.objects.get().pk}".encode() in response.content


@pytest.mark.parametrize("who", ["reviewer", "expert_a", "outsider"])
def test_it_refuses_everyone_but_admins(client, request, who, sim_profile, project):
    client.force_login(request.getfixturevalue(who))
    assert client.get(reverse("generation_runs", args=[project.slug])).status_code == 403
    response = client.post(reverse("generation_run_start", args=[project.slug]), {"stage": "cot"})
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_it_sends_anonymous_visitors_to_log_in(client, project):
    response = client.get(reverse("generation_runs", args=[project.slug]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_it_starts_a_run_from_the_browser(
    logged_in_admin, sim_profile, project, django_capture_on_commit_callbacks
):
    seed = ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in_admin.post(
            reverse("generation_run_start", args=[project.slug]),
            {"stage": "cot", "profile": sim_profile.pk, "limit": ""},
        )
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("generation_run_detail", args=[project.slug, run.pk])
    assert run.created_by.username == "admin"
    seed.refresh_from_db()
    assert seed.status == Status.GENERATED


def test_start_wants_post(logged_in_admin, project):
    response = logged_in_admin.get(reverse("generation_run_start", args=[project.slug]))
    assert response.status_code == 405


def test_start_rejects_bad_input(logged_in_admin, sim_profile, project):
    response = logged_in_admin.post(
        reverse("generation_run_start", args=[project.slug]),
        {"stage": "everything", "profile": sim_profile.pk, "limit": "-3"},
    )
    assert response.status_code == 400
    assert not Run.objects.exists()
    assert b"errorlist" in response.content


def test_the_detail_page_polls_a_partial_while_the_run_is_active(
    logged_in_admin, sim_profile, project
):
    ItemFactory(project=project)
    run = run_start(project=project, stage="cot")
    url = reverse("generation_run_detail", args=[project.slug, run.pk])
    page = logged_in_admin.get(url)
    assert page.status_code == 200
    assert b"<html" in page.content and b'hx-trigger="every 1s"' in page.content
    partial = logged_in_admin.get(url, headers={"HX-Request": "true"})
    assert b"<html" not in partial.content and b'id="run-progress"' in partial.content
    assert b"<progress" in partial.content


def test_pause_resume_and_cancel(
    logged_in_admin, sim_profile, project, django_capture_on_commit_callbacks
):
    ItemFactory(project=project)
    run = run_start(project=project, stage="cot")

    def control(action, **headers):
        url = reverse("generation_run_control", args=[project.slug, run.pk, action])
        return logged_in_admin.post(url, headers=headers)

    assert control("pause").status_code == 302
    run.refresh_from_db()
    assert run.state == Run.State.PAUSED
    response = control("resume", HX_Request="true")
    assert response.status_code == 200 and b'id="run-progress"' in response.content
    run.refresh_from_db()
    assert run.state in {Run.State.RUNNING, Run.State.DONE}
    control("cancel")
    run.refresh_from_db()
    assert run.state in {Run.State.CANCELLED, Run.State.DONE}
    assert control("explode").status_code == 404
    url = reverse("generation_run_control", args=[project.slug, run.pk, "pause"])
    assert logged_in_admin.get(url).status_code == 405


def test_the_retry_button_requeues_a_failed_job(
    logged_in_admin, db, start_simulator, project, django_capture_on_commit_callbacks
):
    from tests.generation.conftest import make_profile

    profile = make_profile(start_simulator(rate_500=1.0).base_url, max_retries=0)
    ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(project=project, stage="cot", profile=profile)
    job = Job.objects.get(run=run)
    assert job.state == Job.State.ERROR
    page = logged_in_admin.get(reverse("generation_run_detail", args=[project.slug, run.pk]))
    assert b"Retry" in page.content
    url = reverse("generation_job_retry", args=[project.slug, run.pk, job.pk])
    response = logged_in_admin.post(url)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED
    # A second click finds nothing to retry and says so.
    response = logged_in_admin.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 409


def test_the_llm_page_shows_profiles_without_keys(logged_in_admin, db, monkeypatch, simulator):
    from tests.generation.conftest import make_profile

    monkeypatch.setenv("GEN_SECRET_KEY_VAR", "sk-very-secret")
    make_profile(simulator.base_url, api_key_env="GEN_SECRET_KEY_VAR")
    prompt_version_current(task="cot", variant="default", language="en")
    response = logged_in_admin.get(reverse("generation_llm"))
    assert response.status_code == 200
    assert b"GEN_SECRET_KEY_VAR" in response.content
    assert b"sk-very-secret" not in response.content
    assert b"cot" in response.content.lower()


def test_editing_a_prompt_appends_a_version(logged_in_admin, db):
    first = prompt_version_current(task="reanswer", variant="direct", language="en")
    url = reverse("generation_prompt_edit", args=[first.pk])
    assert logged_in_admin.get(url).status_code == 200
    response = logged_in_admin.post(
        url, {"system": "Be brief.", "template": "$stem\n$options\nAnswer:", "note": "shorter"}
    )
    assert response.status_code == 302
    newest = prompt_version_current(task="reanswer", variant="direct", language="en")
    assert newest.number == first.number + 1 and newest.source == PromptVersion.Source.ADMIN
    assert newest.created_by.username == "admin"
    first.refresh_from_db()
    assert first.template != newest.template
    assert logged_in_admin.post(url, {"template": ""}).status_code == 400


def test_the_project_page_links_to_the_runs(logged_in_admin, project):
    response = logged_in_admin.get(reverse("project_detail", args=[project.slug]))
    assert reverse("generation_runs", args=[project.slug]).encode() in response.content


def test_the_item_page_retries_an_item_in_error(
    logged_in_admin, db, start_simulator, project, django_capture_on_commit_callbacks
):
    from tests.generation.conftest import make_profile

    profile = make_profile(start_simulator(rate_500=1.0).base_url, max_retries=0)
    item = ItemFactory(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(project=project, stage="cot", profile=profile)
    item.refresh_from_db()
    assert item.status == Status.ERROR
    page = logged_in_admin.get(reverse("item_detail", args=[project.slug, item.pk]))
    url = reverse("generation_item_retry", args=[project.slug, item.pk])
    assert url.encode() in page.content
    assert logged_in_admin.get(url).status_code == 405
    response = logged_in_admin.post(url)
    assert response.status_code == 302
    job = Job.objects.get(run=run, item=item)
    assert job.state == Job.State.QUEUED
    item.refresh_from_db()
    assert item.status != Status.ERROR
    # Nothing left to retry: the page says so instead of failing.
    again = logged_in_admin.post(url, follow=True)
    assert b"No failed LLM job to retry" in again.content


def test_only_admins_may_retry_an_item(client, reviewer, db, project):
    item = ItemFactory(project=project, status=Status.ERROR)
    client.force_login(reviewer)
    url = reverse("generation_item_retry", args=[project.slug, item.pk])
    assert client.post(url).status_code == 403
