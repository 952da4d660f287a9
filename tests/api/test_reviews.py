import pytest

from medcot.lifecycle import transition
from review.models import Panel, RubricDimension
from review.services.panels import panel_submit
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def escalated(project):
    item = ItemFactory(project=project, status="reanswering")
    transition(item, "panel", reason="five strikes")
    return item


def test_it_assigns_a_panel_and_shows_the_scores_to_admins(
    admin_api, project, escalated, expert_a, expert_b
):
    url = f"/api/projects/{project.slug}/items/{escalated.pk}"
    response = admin_api.post(f"{url}/panel/", {"experts": ["expert_a", "expert_b"]}, format="json")
    assert response.status_code == 201, response.json()
    assert sorted(m["expert"] for m in response.json()["members"]) == ["expert_a", "expert_b"]
    escalated.refresh_from_db()
    assert escalated.status == "panel_review"
    panel_submit(
        item=escalated,
        expert=expert_a,
        scores=dict.fromkeys(RubricDimension.values, 2),
        decision="accept",
        answer="A",
    )
    reviews = admin_api.get(f"{url}/reviews/").json()
    assert reviews["panel"]["state"] == "scoring"
    [decision] = reviews["decisions"]
    assert decision["expert"] == "expert_a"
    assert decision["scores"] == dict.fromkeys(RubricDimension.values, 2)
    assert reviews["first_pass"] == [] and reviews["votes"] == []


def test_it_explains_why_a_panel_cannot_be_seated(admin_api, project, escalated, expert_a):
    url = f"/api/projects/{project.slug}/items/{escalated.pk}/panel/"
    too_few = admin_api.post(url, {"experts": ["expert_a"]}, format="json")
    assert too_few.status_code == 400
    assert "at least 2 experts" in str(too_few.json()["error"]["details"]["experts"])
    unknown = admin_api.post(url, {"experts": ["expert_a", "ghost"]}, format="json")
    assert unknown.status_code == 400
    assert "ghost" in str(unknown.json()["error"]["details"]["experts"])
    assert not Panel.objects.exists()


def test_it_keeps_the_review_trail_from_experts(project, escalated, expert_a):
    from tests.api.conftest import token_client

    api = token_client(expert_a)
    assert api.get(f"/api/projects/{project.slug}/items/{escalated.pk}/reviews/").status_code == 403
    response = api.post(
        f"/api/projects/{project.slug}/items/{escalated.pk}/panel/",
        {"experts": ["expert_a"]},
        format="json",
    )
    assert response.status_code == 403
