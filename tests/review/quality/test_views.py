"""The reliability and controls pages, and the quality API."""

import pytest
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import Event, Project
from review.quality.models import ControlItem, ReliabilityAlert
from review.quality.refit import quality_refit
from review.services.queue import queue_claim
from tests.api.conftest import token_client
from tests.review.quality.test_controls import _discard, _pass

pytestmark = pytest.mark.django_db


def _url(project, rest=""):
    return f"/projects/{project.slug}/{rest}"


@pytest.fixture
def worked(project, make_item, make_control, reviewer, reviewer_b):
    """Two reviewers with verdicts, control answers and a refit."""
    Project.objects.filter(pk=project.pk).update(
        control_every=1, control_minimum=2, control_threshold=80
    )
    for _ in range(3):
        make_control(valid=True)
    _pass(queue_claim(user=reviewer, stage="first_review"), reviewer)
    _pass(queue_claim(user=reviewer, stage="first_review"), reviewer)
    _discard(queue_claim(user=reviewer_b, stage="first_review"), reviewer_b)
    _discard(queue_claim(user=reviewer_b, stage="first_review"), reviewer_b)
    Project.objects.filter(pk=project.pk).update(control_every=0)
    for _ in range(3):
        _pass(make_item(), reviewer)
    quality_refit(project_id=project.pk)
    return project


def test_it_shows_the_reliability_page_to_admins_only(
    client, admin_user, reviewer, worked, reviewer_b
):
    client.force_login(reviewer)
    assert client.get(_url(worked, "reliability/")).status_code == 403
    client.force_login(admin_user)
    page = client.get(_url(worked, "reliability/"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "reviewer_b" in text and "100 %" in text
    # The alert banner names the reviewer below the threshold and offers the one action.
    assert "second-opinion" in text


def test_it_sorts_by_any_column(client, admin_user, worked):
    client.force_login(admin_user)
    page = client.get(_url(worked, "reliability/?sort=accuracy&dir=desc"))
    rows = page.context["rows"]
    assert [r["accuracy"] for r in rows] == sorted((r["accuracy"] for r in rows), reverse=True)
    # An unknown column falls back to names.
    assert client.get(_url(worked, "reliability/?sort=nope")).status_code == 200


def test_the_export_names_people_by_pseudonym_only(client, admin_user, reviewer, worked):
    client.force_login(admin_user)
    response = client.get(_url(worked, "reliability/?export=csv"))
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/csv")
    assert reviewer.medcot_profile.pseudonym in body
    assert "reviewer" not in body.replace(reviewer.medcot_profile.pseudonym, "")


def test_the_second_opinion_is_one_post_shared_with_the_api(client, admin_user, reviewer_b, worked):
    alert = ReliabilityAlert.objects.get(reviewer=reviewer_b)
    url = _url(worked, f"reliability/alerts/{alert.pk}/second-opinion/")
    client.force_login(admin_user)
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 302
    alert.refresh_from_db()
    assert alert.second_opinion_at is not None
    assert Event.objects.filter(kind="second_opinion_requested").count() == 1
    api = token_client(admin_user)
    response = api.post(f"/api/projects/{worked.slug}/quality/alerts/{alert.pk}/second-opinion/")
    assert response.status_code == 200
    assert response.json()["second_opinion_at"]
    assert Event.objects.filter(kind="second_opinion_requested").count() == 1


def test_a_closed_alert_refuses_a_second_opinion(admin_user, reviewer_b, worked):
    alert = ReliabilityAlert.objects.get(reviewer=reviewer_b)
    alert.closed_at = timezone.now()
    alert.save()
    api = token_client(admin_user)
    response = api.post(f"/api/projects/{worked.slug}/quality/alerts/{alert.pk}/second-opinion/")
    assert response.status_code == 400


def test_the_overview_shows_the_alert_banner(client, admin_user, worked):
    client.force_login(admin_user)
    assert "control-accuracy threshold" in client.get("/review/overview/").content.decode()


def test_it_makes_controls_from_an_item_and_from_a_file(client, admin_user, make_item, project):
    client.force_login(admin_user)
    approved = make_item(status=Status.APPROVED)
    response = client.post(
        _url(project, "controls/"), {"item-item": approved.pk, "item-stage": "first_review"}
    )
    assert response.status_code == 302
    assert ControlItem.objects.get(source_item=approved).expected_valid
    good = (
        b'{"id": "c1", "question": "Which drug first?", "options": {"A": "x", "B": "y", '
        b'"C": "z", "D": "w"}, "answer": "B"}\n'
    )
    response = client.post(
        _url(project, "controls/"),
        {
            "file-file": _upload("controls.jsonl", good),
            "file-stage": "consensus",
            "file-verdict": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:500]
    made = ControlItem.objects.get(source="file")
    assert made.stage == "consensus" and made.expected_valid is False
    assert made.item.status == Status.CONSENSUS


def test_a_bad_control_file_creates_nothing(client, admin_user, project):
    client.force_login(admin_user)
    bad = b'{"id": "c1", "question": "Q", "options": {"A": "x"}, "answer": "Z"}\n'
    response = client.post(
        _url(project, "controls/"),
        {"file-file": _upload("c.jsonl", bad), "file-stage": "first_review", "file-verdict": "1"},
    )
    assert response.status_code == 422
    assert not ControlItem.objects.exists()


def test_the_api_lists_reliability_controls_and_posteriors(admin_user, reviewer, worked):
    api = token_client(admin_user)
    body = api.get(f"/api/projects/{worked.slug}/quality/reliability/?sort=verdicts").json()
    people = {row["pseudonym"]: row for row in body["people"]}
    mine = people[reviewer.medcot_profile.pseudonym]
    assert mine["controls"] == 2 and mine["accuracy"] == 1.0
    assert mine["sensitivity"] is not None
    assert "username" not in mine and "name" not in mine
    controls = api.get(f"/api/projects/{worked.slug}/quality/controls/").json()
    assert len(controls["results"]) == 3
    posteriors = api.get(f"/api/projects/{worked.slug}/quality/posteriors/").json()
    assert len(posteriors["results"]) == 3
    assert all(0 <= p["p_valid"] <= 1 for p in posteriors["results"])
    alerts = api.get(f"/api/projects/{worked.slug}/quality/alerts/").json()
    assert len(alerts) == 1


def test_the_api_refuses_non_admins_and_bad_input(reviewer, admin_user, project, make_item):
    assert (
        token_client(reviewer).get(f"/api/projects/{project.slug}/quality/reliability/").status_code
        == 403
    )
    api = token_client(admin_user)
    assert api.get(f"/api/projects/{project.slug}/quality/reliability/?sort=x").status_code == 400
    pending = make_item(status=Status.CONSENSUS)
    response = api.post(
        f"/api/projects/{project.slug}/quality/controls/", {"item": pending.pk}, format="json"
    )
    assert response.status_code == 400
    response = api.post(
        f"/api/projects/{project.slug}/quality/controls/",
        {"item": pending.pk, "expected_valid": True, "stage": "consensus"},
        format="json",
    )
    assert response.status_code == 201 and response.json()["stage"] == "consensus"


def test_the_schema_lists_the_quality_endpoints(admin_user):
    schema = token_client(admin_user).get("/api/schema/?format=json").json()
    paths = set(schema["paths"])
    for path in ("reliability", "controls", "alerts", "posteriors"):
        assert f"/api/projects/{{slug}}/quality/{path}/" in paths


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)
