"""Two experts submitting a panel's last scores at the same instant: one round close, one
consensus decision, not two. Real threads with their own database connections, on PostgreSQL
(SQLite has no row locks, so the race cannot be shown there)."""

import threading

import pytest
from django.db import connection

from medcot.lifecycle import transition
from medcot.models import Event, Item
from review.models import ConsensusVote, Panel, PanelDecision, RubricDimension
from review.services.panels import panel_assign, panel_submit
from tests.factories import ItemFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROUNDS = 5


def _submit_together(item_id: int, experts) -> list[BaseException | None]:
    barrier = threading.Barrier(len(experts))
    outcomes: list[BaseException | None] = [None] * len(experts)

    def submit(index: int, expert) -> None:
        try:
            item = Item.objects.get(pk=item_id)
            barrier.wait(timeout=10)
            panel_submit(
                item=item,
                expert=expert,
                scores=dict.fromkeys(RubricDimension.values, 2),
                decision="accept",
                answer=item.current_version.answer,
            )
        except BaseException as exc:  # reported below, with the expert it belongs to
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i, e)) for i, e in enumerate(experts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a submission hung"
    return outcomes


def test_it_reaches_one_consensus_when_the_last_two_scores_race(
    project, admin_user, expert_a, expert_b
):
    for _ in range(ROUNDS):
        item = ItemFactory(project=project, status="reanswering")
        transition(item, "panel", reason="five strikes")
        panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)

        outcomes = _submit_together(item.pk, [expert_a, expert_b])

        assert outcomes == [None, None], outcomes
        item.refresh_from_db()
        assert item.status == "approved"
        assert PanelDecision.objects.filter(item=item).count() == 2
        assert Panel.objects.get(item=item).state == "closed"
        # Exactly one move out of panel review and one consensus decision.
        moves = Event.objects.filter(item=item, kind="transition")
        assert moves.filter(from_status="panel_review").count() == 1
        assert moves.filter(from_status="consensus").count() == 1
        assert ConsensusVote.objects.filter(item=item).count() == 2
