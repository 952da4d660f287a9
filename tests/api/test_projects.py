import pytest

from medcot.models import Event, Project

pytestmark = pytest.mark.django_db


def test_it_lists_projects_with_counts_for_any_role(reviewer_api, project):
    response = reviewer_api.get("/api/projects/")
    assert response.status_code == 200
    body = response.json()
    assert [p["slug"] for p in body["results"]] == [project.slug]
    assert body["results"][0]["item_count"] == 0
    assert "next" in body and "previous" in body


def test_it_refuses_anonymous_with_401_and_an_error_body(anon_api):
    response = anon_api.get("/api/projects/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_refuses_a_user_without_a_role(outsider_api):
    response = outsider_api.get("/api/projects/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_it_lets_an_admin_create_a_project_with_an_event(admin_api, admin_user):
    response = admin_api.post(
        "/api/projects/", {"name": "Cardio 2026", "reanswer_attempts": 3}, format="json"
    )
    assert response.status_code == 201, response.json()
    project = Project.objects.get(slug="cardio-2026")
    assert project.reanswer_attempts == 3
    assert project.created_by == admin_user
    assert response["Location"] == "/api/projects/cardio-2026/"
    assert Event.objects.filter(project=project, kind="project_created").count() == 1


def test_it_refuses_project_creation_to_a_reviewer(reviewer_api):
    response = reviewer_api.post("/api/projects/", {"name": "Nope"}, format="json")
    assert response.status_code == 403
    assert not Project.objects.filter(name="Nope").exists()


def test_it_reports_bad_project_settings_field_by_field(admin_api, project):
    response = admin_api.post(
        "/api/projects/",
        {"name": project.name, "reanswer_attempts": 0, "expansion_factor": "many"},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["details"]) == {"name", "reanswer_attempts", "expansion_factor"}


def test_it_answers_a_slug_clash_from_the_name_with_400(admin_api, project):
    response = admin_api.post("/api/projects/", {"name": project.slug.upper()}, format="json")
    assert response.status_code == 400
    assert "slug" in response.json()["error"]["details"]


def test_it_shows_a_project_with_status_counts(reviewer_api, project):
    from tests.factories import ItemFactory

    ItemFactory(project=project, status="first_review")
    response = reviewer_api.get(f"/api/projects/{project.slug}/")
    assert response.status_code == 200
    assert response.json()["status_counts"]["first_review"] == 1
    assert response.json()["status_counts"]["approved"] == 0


def test_it_answers_404_with_an_error_body_for_an_unknown_project(admin_api):
    response = admin_api.get("/api/projects/nope/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_refuses_put_with_405(admin_api, project):
    response = admin_api.put(f"/api/projects/{project.slug}/", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_it_pages_projects_with_a_cursor(admin_api):
    from tests.factories import ProjectFactory

    ProjectFactory.create_batch(5)
    first = admin_api.get("/api/projects/?page_size=2").json()
    assert len(first["results"]) == 2 and first["next"]
    second = admin_api.get(first["next"]).json()
    assert len(second["results"]) == 2
    assert not {p["id"] for p in first["results"]} & {p["id"] for p in second["results"]}


def test_it_accepts_session_authentication_with_csrf(admin_user, project):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get("/api/projects/").status_code == 200
    # A session-authenticated write without the CSRF token is refused.
    response = client.post("/api/projects/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
