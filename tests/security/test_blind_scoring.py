"""Experts score blind: until an expert has submitted, no page shows them another expert's
scores or comments for the same round."""

import pytest
from django.test import Client

from medcot.lifecycle import transition
from review.services.panels import panel_assign, panel_submit
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

SECRET = "B-only: the ECG reading in step 3 is wrong"


@pytest.fixture
def scored_by_b(project, admin_user, expert_a, expert_b):
    item = ItemFactory(project=project, status="reanswering")
    transition(item, "panel", reason="five strikes")
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    panel_submit(
        item=item,
        expert=expert_b,
        scores=_all_dimensions(1),
        decision="revise",
        answer="A",
        comment=SECRET,
    )
    return item


def _all_dimensions(value: int) -> dict[str, int]:
    from review.models import RubricDimension

    return dict.fromkeys(RubricDimension.values, value)


def _page(user, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    return f"{response.status_code} {response.content.decode()}"


def test_it_hides_another_experts_scores_on_the_panel_page(scored_by_b, expert_a):
    page = _page(expert_a, f"/review/panels/item/{scored_by_b.pk}/")
    assert page.startswith("200")
    assert SECRET not in page


def test_it_hides_another_experts_scores_on_the_history_page(scored_by_b, expert_a):
    page = _page(expert_a, f"/review/items/{scored_by_b.pk}/history/")
    assert SECRET not in page


def test_it_shows_the_scores_to_an_admin(scored_by_b, admin_user):
    assert SECRET in _page(admin_user, f"/review/items/{scored_by_b.pk}/history/")
