import pytest

from medcot.lifecycle import Status
from review.services.common import ReviewError
from review.services.consensus import consensus_vote

pytestmark = pytest.mark.django_db


def test_it_approves_once_enough_experts_agree(make_item, expert_a, expert_b):
    item = make_item(status=Status.CONSENSUS)
    consensus_vote(item=item, expert=expert_a, answer="A", approve_phrasing=True)
    item.refresh_from_db()
    assert item.status == Status.CONSENSUS
    consensus_vote(item=item, expert=expert_b, answer="A", approve_phrasing=True)
    item.refresh_from_db()
    assert item.status == Status.APPROVED


def test_a_dissent_keeps_the_item_open_for_another_expert(make_item, expert_a, expert_b, expert_c):
    item = make_item(status=Status.CONSENSUS)
    consensus_vote(item=item, expert=expert_a, answer="A", approve_phrasing=True)
    consensus_vote(item=item, expert=expert_b, answer="B", approve_phrasing=True, comment="B")
    item.refresh_from_db()
    assert item.status == Status.CONSENSUS
    consensus_vote(item=item, expert=expert_c, answer="A", approve_phrasing=True)
    item.refresh_from_db()
    assert item.status == Status.APPROVED


def test_it_discards_when_consensus_can_no_longer_be_reached(
    make_item, expert_a, expert_b, expert_c
):
    item = make_item(status=Status.CONSENSUS)
    for expert in (expert_a, expert_b, expert_c):
        consensus_vote(
            item=item, expert=expert, answer="A", approve_phrasing=False, comment="vague"
        )
    item.refresh_from_db()
    assert item.status == Status.DISCARDED
    assert "No consensus" in item.status_reason


def test_it_requires_a_comment_to_disagree(make_item, expert_a):
    item = make_item(status=Status.CONSENSUS)
    with pytest.raises(ReviewError):
        consensus_vote(item=item, expert=expert_a, answer="B", approve_phrasing=True)


def test_it_refuses_a_second_vote_and_non_experts(make_item, expert_a, reviewer):
    item = make_item(status=Status.CONSENSUS)
    consensus_vote(item=item, expert=expert_a, answer="A", approve_phrasing=True)
    with pytest.raises(ReviewError, match="already"):
        consensus_vote(item=item, expert=expert_a, answer="A", approve_phrasing=True)
    with pytest.raises(ReviewError):
        consensus_vote(item=item, expert=reviewer, answer="A", approve_phrasing=True)


def test_an_item_arriving_with_enough_votes_is_settled(make_item, expert_a, project):
    from medcot.lifecycle import transition
    from review.services.consensus import consensus_settle_ready
    from review.services.first_pass import first_pass_submit

    project.consensus_minimum = 1
    project.save()
    item = make_item()
    first_pass_submit(
        item=item,
        reviewer=expert_a,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
    )
    item.refresh_from_db()
    transition(item, Status.CONSENSUS, reason="attempt 1 correct")
    assert consensus_settle_ready() == 1
    item.refresh_from_db()
    assert item.status == Status.APPROVED
