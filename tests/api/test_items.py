import pytest

from medcot.lifecycle import transition
from medcot.services import item_version_create
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


def test_it_filters_items_by_status_specialty_and_language(admin_api, project):
    wanted = ItemFactory(project=project, status="first_review", specialty="Neurology")
    ItemFactory(project=project, status="first_review", specialty="Cardiology")
    ItemFactory(project=project, status="imported", specialty="Neurology")
    ItemFactory(project=project, status="first_review", specialty="Neurology", language="zh")
    response = admin_api.get(
        f"/api/projects/{project.slug}/items/",
        {"status": "first_review", "specialty": "Neurology", "language": "en"},
    )
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["results"]] == [wanted.pk]


def test_it_filters_items_by_pipeline_stage(admin_api, project):
    panel = ItemFactory(project=project, status="panel")
    in_review = ItemFactory(project=project, status="panel_review")
    ItemFactory(project=project, status="first_review")
    response = admin_api.get(f"/api/projects/{project.slug}/items/", {"stage": "panel"})
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["results"]] == [panel.pk, in_review.pk]
    response = admin_api.get(f"/api/projects/{project.slug}/items/", {"stage": "limbo"})
    assert response.status_code == 400
    assert "stage" in response.json()["error"]["details"]


def test_it_rejects_an_unknown_status_filter(admin_api, project):
    response = admin_api.get(f"/api/projects/{project.slug}/items/", {"status": "nirvana"})
    assert response.status_code == 400
    assert "status" in response.json()["error"]["details"]


def test_it_shows_an_item_with_every_version_and_event(admin_api, admin_user, project):
    item = ItemFactory(project=project, status="imported")
    transition(item, "generating", actor=admin_user)
    item_version_create(item=item, author_kind="llm", reason="CoT drafted", cot="Because.")
    response = admin_api.get(f"/api/projects/{project.slug}/items/{item.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "generating"
    assert [v["number"] for v in body["versions"]] == [2, 1]
    assert body["current"]["cot"] == "Because."
    assert body["current"]["options"]["A"] == "Aspirin and ECG"
    kinds = [e["kind"] for e in body["events"]]
    assert kinds == ["transition", "version_created"]
    assert body["events"][0]["actor"] == admin_user.username


def test_it_hides_items_of_another_project_behind_404(admin_api, project):
    from tests.factories import ProjectFactory

    other = ItemFactory(project=ProjectFactory())
    response = admin_api.get(f"/api/projects/{project.slug}/items/{other.pk}/")
    assert response.status_code == 404


def test_it_shows_reviewers_only_items_they_hold(reviewer_api, project):
    item = ItemFactory(project=project, status="first_review")
    listing = reviewer_api.get(f"/api/projects/{project.slug}/items/")
    assert listing.status_code == 200
    assert listing.json()["results"] == []
    assert reviewer_api.get(f"/api/projects/{project.slug}/items/{item.pk}/").status_code == 403


def test_it_pages_items_in_id_order(admin_api, project):
    items = ItemFactory.create_batch(5, project=project)
    seen = []
    url = f"/api/projects/{project.slug}/items/?page_size=2"
    while url:
        body = admin_api.get(url).json()
        seen.extend(i["id"] for i in body["results"])
        url = body["next"]
    assert seen == [i.pk for i in items]
