"""Panels for many items at once, the explanation of an automatic choice, the reasons an item
cannot be assigned, and the specialty set in bulk."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from medcot.lifecycle import Status
from medcot.models import Event, Item
from medcot.roles import EXPERT
from review.models import Panel, PanelMembership, PanelState, RubricDimension
from review.selectors import panel_deadlock_reason, panel_waiting_query
from review.services import person_create
from review.services.assignment import (
    items_specialty_set,
    panel_auto_choose,
    panels_assign_bulk,
)
from review.services.common import ReviewError
from review.services.panels import panel_assign, panel_submit

pytestmark = pytest.mark.django_db


def test_it_assigns_every_selected_item_and_explains_each_choice(
    make_item, admin_user, expert_a, expert_b, expert_c
):
    items = [make_item(status=Status.PANEL) for _ in range(6)]
    result = panels_assign_bulk(items=items, actor=admin_user)
    assert len(result.assigned) == 6 and result.not_assigned == []
    assert Panel.objects.filter(item__in=items).count() == 6
    first = result.assigned[0]
    # Cardiology items go to the Cardiology experts first, by fewest open panels.
    assert {e.username for e in first.experts} == {"expert_a", "expert_b"}
    assert "Cardiology" in first.why and "open panel" in first.why


@override_settings(REVIEW_MAX_OPEN_PANELS=1)
def test_it_passes_over_experts_at_the_load_limit_and_says_so(
    make_item, admin_user, expert_a, expert_b, expert_c
):
    person_create(username="neuro2", password="x" * 20, roles=[EXPERT], specialties=["Neurology"])
    items = [make_item(status=Status.PANEL) for _ in range(3)]
    result = panels_assign_bulk(items=items, actor=admin_user)
    # Four experts with one seat each: two panels of two, then nobody is free.
    assert len(result.assigned) == 2 and len(result.not_assigned) == 1
    assert "Load limit" in result.not_assigned[0].why
    assert Item.objects.get(pk=result.not_assigned[0].item.pk).status == Status.PANEL
    # The second panel went outside the specialty, and the explanation says so.
    assert "No expert of Cardiology was free" in result.assigned[1].why


def test_it_says_when_no_expert_has_the_specialty(make_item, admin_user, expert_c):
    item = make_item(status=Status.PANEL, specialty="Dermatology")
    with pytest.raises(ReviewError, match="No expert of Dermatology"):
        panel_auto_choose(item=item)
    result = panels_assign_bulk(items=[item], actor=admin_user)
    assert result.assigned == [] and "No expert of Dermatology" in result.not_assigned[0].why


def test_it_seats_chosen_experts_where_it_may(make_item, admin_user, expert_a, expert_b):
    items = [make_item(status=Status.PANEL) for _ in range(3)]
    already = make_item(status=Status.PANEL_REVIEW)
    result = panels_assign_bulk(
        items=[*items, already], actor=admin_user, experts=[expert_a, expert_b]
    )
    assert len(result.assigned) == 3
    assert [row.item.pk for row in result.not_assigned] == [already.pk]
    assert PanelMembership.objects.filter(why="assigned").count() == 6


def test_only_admins_assign_in_bulk(make_item, expert_a):
    with pytest.raises(PermissionDenied):
        panels_assign_bulk(items=[make_item(status=Status.PANEL)], actor=expert_a)


def test_it_sets_the_specialty_of_many_items_with_an_event_each(make_item, admin_user):
    items = [make_item(status=Status.PANEL, specialty="") for _ in range(3)]
    items.append(make_item(status=Status.PANEL, specialty="Cardiology"))
    assert items_specialty_set(items=items, specialty=" Cardiology ", actor=admin_user) == 3
    assert set(
        Item.objects.filter(pk__in=[i.pk for i in items]).values_list("specialty", flat=True)
    ) == {"Cardiology"}
    assert Event.objects.filter(kind="specialty_set").count() == 3


def test_the_filter_matches_specialty_and_wrong_attempts(make_item):
    from generation.models import ReanswerAttempt

    plain = make_item(status=Status.PANEL, specialty="")
    cardio = make_item(status=Status.PANEL)
    for number in range(1, 4):
        ReanswerAttempt.objects.create(
            item=cardio, number=number, variant="v", model="m", option_order="ABCD",
            answer="B", raw_answer="B", parsed=True, correct=False, reply="B",
        )  # fmt: skip
    assert list(panel_waiting_query(specialty="-")) == [plain]
    assert list(panel_waiting_query(specialty="Cardiology")) == [cardio]
    assert list(panel_waiting_query(min_wrong=3)) == [cardio]
    assert panel_waiting_query(min_wrong=3).first().wrong_attempts == 3


def test_a_deadlock_names_the_split_and_why_no_expert_was_added(
    make_item, admin_user, expert_a, expert_b
):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    scores = dict.fromkeys(RubricDimension.values, 1)
    panel_submit(item=item, expert=expert_a, scores=scores, decision="accept", answer="A")
    panel_submit(
        item=item, expert=expert_b, scores=scores, decision="discard", answer="A", comment="Wrong"
    )
    panel = Panel.objects.get(item=item)
    assert panel.state == PanelState.ADJUDICATION
    reason = panel_deadlock_reason(panel=panel, item=item)
    assert "1 expert: accept with key A" in reason and "1 expert: discard" in reason
    assert "no other eligible expert" in reason


def test_the_specialty_filter_lists_each_waiting_specialty_once(make_item):
    from review.selectors import panel_waiting_specialties

    for specialty in ("Cardiology", "Cardiology", "Neurology", "Cardiology", ""):
        make_item(status=Status.PANEL, specialty=specialty)
    make_item(status=Status.CONSENSUS, specialty="Virology")
    assert panel_waiting_specialties() == ["Cardiology", "Neurology"]
