import pytest
from django.db import IntegrityError

from medcot.lifecycle import Status
from medcot.models import Event, Item
from review.models import (
    ConsensusVote,
    FirstPassReview,
    Panel,
    PanelState,
    RubricDimension,
    RubricScore,
)
from review.selectors import panel_round_view
from review.services.common import ReviewError
from review.services.panels import (
    adjudication_decide,
    panel_assign,
    panel_auto_assign,
    panel_revise,
    panel_submit,
)

pytestmark = pytest.mark.django_db

GOOD = dict.fromkeys(RubricDimension.values, 2)


def score(item, expert, decision="accept", answer="A", comment=""):
    return panel_submit(
        item=item, expert=expert, scores=GOOD, decision=decision, answer=answer, comment=comment
    )


@pytest.fixture
def panel_item(make_item):
    return make_item(status=Status.PANEL)


def test_it_auto_assigns_by_specialty_then_load(
    panel_item, admin_user, expert_a, expert_b, expert_c
):
    panel = panel_auto_assign(item=panel_item, actor=admin_user)
    members = set(panel.memberships.values_list("expert__username", flat=True))
    # The item is Cardiology: expert_c (Neurology only) is left out.
    assert members == {"expert_a", "expert_b"}
    panel_item.refresh_from_db()
    assert panel_item.status == Status.PANEL_REVIEW


def test_it_never_seats_the_first_pass_reviewer(panel_item, admin_user, expert_a, expert_b):
    FirstPassReview.objects.create(
        item=panel_item,
        version=panel_item.current_version,
        reviewer=expert_a,
        relevance=True,
        correctness=True,
        sufficiency=True,
        outcome="pass",
        state="applied",
        effective_at=panel_item.created_at,
    )
    with pytest.raises(ReviewError, match="cannot sit"):
        panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)


def test_it_refuses_a_panel_smaller_than_the_project_size(panel_item, admin_user, expert_a):
    with pytest.raises(ReviewError, match="at least 2"):
        panel_assign(item=panel_item, experts=[expert_a], actor=admin_user)


def test_it_refuses_non_admins(panel_item, expert_a, expert_b):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=expert_a)


def test_it_approves_when_the_panel_agrees(panel_item, admin_user, expert_a, expert_b):
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a)
    panel_item.refresh_from_db()
    assert panel_item.status == Status.PANEL_REVIEW
    score(panel_item, expert_b)
    panel_item.refresh_from_db()
    assert panel_item.status == Status.APPROVED
    assert ConsensusVote.objects.filter(item=panel_item, source="panel").count() == 2
    assert RubricScore.objects.filter(item=panel_item).count() == 10
    moves = list(
        Event.objects.filter(item=panel_item, kind="transition").values_list("to_status", flat=True)
    )
    assert moves[-2:] == [Status.CONSENSUS, Status.APPROVED]


def test_it_keeps_scores_blind_until_everyone_submitted(panel_item, admin_user, expert_a, expert_b):
    panel = panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a)
    seen_by_b = panel_round_view(panel=panel, user=expert_b)["rounds"][0]
    assert seen_by_b["visible"] == [] and seen_by_b["hidden_count"] == 1
    seen_by_a = panel_round_view(panel=panel, user=expert_a)["rounds"][0]
    assert [row["mine"] for row in seen_by_a["visible"]] == [True]
    score(panel_item, expert_b, decision="discard", comment="Unsafe")
    panel.refresh_from_db()
    seen_by_b = panel_round_view(panel=panel, user=expert_b)["rounds"][0]
    assert len(seen_by_b["visible"]) == 2


def test_a_disagreement_brings_in_a_further_expert(
    panel_item, admin_user, expert_a, expert_b, expert_c
):
    panel = panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a)
    score(panel_item, expert_b, answer="B", comment="B is right")
    panel.refresh_from_db()
    assert panel.memberships.filter(expert=expert_c, why="adjudication").exists()
    panel_item.refresh_from_db()
    assert panel_item.status == Status.PANEL_REVIEW
    score(panel_item, expert_c)
    panel_item.refresh_from_db()
    assert panel_item.status == Status.APPROVED
    # Only the two who agree on the key are the consensus.
    assert set(
        ConsensusVote.objects.filter(item=panel_item).values_list("expert__username", flat=True)
    ) == {"expert_a", "expert_c"}


def test_it_asks_an_admin_when_no_expert_is_left(panel_item, admin_user, expert_a, expert_b):
    panel = panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a)
    score(panel_item, expert_b, decision="discard", comment="wrong")
    panel.refresh_from_db()
    assert panel.state == PanelState.ADJUDICATION
    with pytest.raises(ReviewError, match="Fewer than"):
        adjudication_decide(item=panel_item, admin=admin_user, outcome="accept", reason="A ok")
    adjudication_decide(item=panel_item, admin=admin_user, outcome="discard", reason="No agreement")
    panel_item.refresh_from_db()
    assert panel_item.status == Status.DISCARDED


def test_a_revision_returns_to_the_same_panel(panel_item, admin_user, expert_a, expert_b):
    panel = panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a, decision="revise", comment="Step 2 is wrong")
    score(panel_item, expert_b, decision="revise", comment="Agree")
    panel.refresh_from_db()
    assert panel.state == PanelState.REVISING
    panel_revise(
        item=panel_item,
        expert=expert_a,
        reason="Fixed step 2",
        cot="1. ECG\n2. Aspirin",
        answer="A",
    )
    panel.refresh_from_db()
    panel_item.refresh_from_db()
    assert (panel.round, panel.state) == (2, PanelState.SCORING)
    assert panel.round_version_id == panel_item.current_version_id
    assert panel_item.revision_status == "modified"
    score(panel_item, expert_a)
    score(panel_item, expert_b)
    panel_item.refresh_from_db()
    assert panel_item.status == Status.APPROVED


def test_it_refuses_a_second_scoring_of_the_round(panel_item, admin_user, expert_a, expert_b):
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a)
    with pytest.raises(ReviewError, match="already"):
        score(panel_item, expert_a)


def test_it_refuses_scores_out_of_range(panel_item, admin_user, expert_a, expert_b):
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    with pytest.raises(ReviewError):
        panel_submit(
            item=panel_item,
            expert=expert_a,
            scores={**GOOD, "clinical_utility": 3},
            decision="accept",
            answer="A",
        )


def test_the_database_refuses_a_score_of_three(panel_item, expert_a):
    with pytest.raises(IntegrityError):
        RubricScore.objects.create(
            item=panel_item,
            version=panel_item.current_version,
            expert=expert_a,
            round=1,
            dimension="clinical_utility",
            score=3,
        )


def test_it_refuses_non_members(panel_item, admin_user, expert_a, expert_b, expert_c):
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    with pytest.raises(ReviewError, match="not on"):
        score(panel_item, expert_c)
    assert Panel.objects.get(item=panel_item).decisions.count() == 0


@pytest.fixture
def revising(panel_item, admin_user, expert_a, expert_b):
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    score(panel_item, expert_a, decision="revise", comment="Step 2 is wrong")
    score(panel_item, expert_b, decision="revise", comment="Agree")
    return panel_item


FOUR = {"A": "Aspirin and ECG", "B": "Discharge home", "C": "Ultrasound", "D": "Antacid"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stem": ""}, "stem cannot be empty"),
        ({"stem": "  \n "}, "stem cannot be empty"),
        ({"options": {"A": "a", "B": "b", "C": "c"}}, "Options A to D are required; D is empty"),
        ({"options": {**FOUR, "B": "   "}}, "Options A to D are required; B is empty"),
        ({"options": {**FOUR, "F": "f"}}, "There is no option F"),
        ({"options": {**FOUR, "C": 3}}, "must be text"),
        ({"options": ["a", "b", "c", "d"]}, "mapping"),
        ({"options": {**FOUR, "E": "  "}, "answer": "E"}, "key must name one of the options"),
        ({"answer": "E"}, "key must name one of the options"),
        ({"answer": "Z"}, "key must name one of the options"),
        ({"cot": None}, "must be text"),
    ],
)
def test_it_refuses_a_revision_the_database_would_refuse(revising, expert_a, change, message):
    """Every rule of ItemVersion's constraints is a clear ReviewError here, not an
    IntegrityError for the caller to turn into a 500."""
    before = revising.current_version_id
    kwargs = {"reason": "Fix", "cot": "1. ECG", "answer": "A", **change}
    with pytest.raises(ReviewError, match=message):
        panel_revise(item=revising, expert=expert_a, **kwargs)
    revising.refresh_from_db()
    assert revising.current_version_id == before
    panel = Panel.objects.get(item=revising)
    assert (panel.round, panel.state) == (1, PanelState.REVISING)


def test_it_saves_a_revised_stem_and_options_stripped(revising, expert_a):
    options = {**FOUR, "A": "  Aspirin, then ECG  ", "E": "Echo"}
    panel_revise(
        item=revising,
        expert=expert_a,
        reason="Clearer",
        cot="1. ECG",
        answer="E",
        stem="  A 54-year-old man has chest pain. First step?  ",
        options=options,
    )
    version = Item.objects.get(pk=revising.pk).current_version
    assert version.stem == "A 54-year-old man has chest pain. First step?"
    assert version.options == {**FOUR, "A": "Aspirin, then ECG", "E": "Echo"}
    assert (version.answer, version.cot, version.number) == ("E", "1. ECG", 2)


def test_it_refuses_a_revision_that_only_adds_whitespace(revising, expert_a):
    current = revising.current_version
    with pytest.raises(ReviewError, match="changes nothing"):
        panel_revise(
            item=revising,
            expert=expert_a,
            reason="Nothing really",
            cot=f"  {current.cot}  ",
            answer=current.answer,
            stem=f"{current.stem}  ",
            options={label: f" {text} " for label, text in current.options.items()},
        )
