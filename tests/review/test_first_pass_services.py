from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.test import override_settings
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import Event, RevisionStatus
from review.models import ConsensusVote, FirstPassReview, FirstPassState, Lease, Stage
from review.services.common import ReviewError
from review.services.first_pass import (
    ContentFix,
    first_pass_apply_due,
    first_pass_submit,
    first_pass_undo,
)
from review.services.queue import queue_claim

pytestmark = pytest.mark.django_db


def submit(item, user, *, ones=(True, True, True), **kwargs):
    relevance, correctness, sufficiency = ones
    return first_pass_submit(
        item=item,
        reviewer=user,
        relevance=relevance,
        correctness=correctness,
        sufficiency=sufficiency,
        **kwargs,
    )


def test_it_sends_a_pass_to_reanswering(reviewer, make_item):
    item = make_item()
    queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    review = submit(item, reviewer, action="pass", seconds_on_item=42)
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert review.state == FirstPassState.APPLIED and review.seconds_on_item == 42
    assert not Lease.objects.filter(item=item).exists()
    assert Event.objects.filter(item=item, to_status=Status.REANSWERING, actor=reviewer).exists()


def test_it_refuses_a_pass_with_a_zero(reviewer, make_item):
    item = make_item()
    with pytest.raises(ReviewError):
        submit(item, reviewer, ones=(True, False, True), action="pass")


def test_it_requires_a_reason_for_a_discard(reviewer, make_item):
    item = make_item()
    with pytest.raises(ReviewError):
        submit(item, reviewer, ones=(False, True, True), action="discard", reason="  ")


def test_it_discards_with_the_reason(reviewer, make_item):
    item = make_item()
    submit(item, reviewer, ones=(False, True, True), action="discard", reason="Off topic")
    item.refresh_from_db()
    assert item.status == Status.DISCARDED and item.status_reason == "Off topic"


def test_it_saves_a_fix_as_a_new_human_version(reviewer, make_item):
    item = make_item()
    version = item.current_version
    fix = ContentFix(
        stem=version.stem,
        options=version.options,
        answer="A",
        cot="Aspirin first; **ECG** within 10 minutes.",
    )
    review = submit(
        item, reviewer, ones=(True, False, True), action="fix", reason="CoT wrong", fix=fix
    )
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert item.revision_status == RevisionStatus.MODIFIED
    assert item.current_version.number == 2
    assert item.current_version.author == reviewer
    assert item.current_version.author_kind == "human"
    assert review.fix_version_id == item.current_version_id


def test_it_refuses_a_fix_that_changes_nothing(reviewer, make_item):
    item = make_item()
    v = item.current_version
    fix = ContentFix(stem=v.stem, options=v.options, answer=v.answer, cot=v.cot)
    with pytest.raises(ReviewError, match="changes nothing"):
        submit(item, reviewer, ones=(False, True, True), action="fix", reason="x", fix=fix)


def test_it_refuses_a_fix_whose_key_names_no_option(reviewer, make_item):
    item = make_item()
    v = item.current_version
    fix = ContentFix(stem=v.stem, options=v.options, answer="E", cot="new")
    with pytest.raises(ReviewError, match="key"):
        submit(item, reviewer, ones=(False, True, True), action="fix", reason="x", fix=fix)


def test_it_refuses_an_item_leased_to_someone_else(reviewer, reviewer_b, make_item):
    item = make_item()
    queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW)
    with pytest.raises(ReviewError, match="Someone else"):
        submit(item, reviewer, action="pass")


def test_it_counts_an_experts_pass_toward_consensus(expert_a, make_item):
    item = make_item()
    submit(item, expert_a, action="pass")
    vote = ConsensusVote.objects.get(item=item)
    assert vote.expert == expert_a and vote.source == "first_pass"


def test_it_does_not_count_the_pass_when_the_project_says_no(expert_a, make_item, project):
    project.first_pass_counts_for_consensus = False
    project.save()
    item = make_item()
    submit(item, expert_a, action="pass")
    assert not ConsensusVote.objects.filter(item=item).exists()


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_holds_a_submission_for_the_undo_window(reviewer, reviewer_b, make_item):
    item = make_item()
    queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    review = submit(item, reviewer, ones=(False, True, True), action="discard", reason="dup")
    item.refresh_from_db()
    assert review.state == FirstPassState.HELD and item.status == Status.FIRST_REVIEW
    # Nobody else is handed an item whose verdict may still be undone.
    Lease.objects.filter(item=item).delete()
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW) is None
    assert first_pass_apply_due(now=timezone.now() + timedelta(seconds=31)) == 1
    item.refresh_from_db()
    assert item.status == Status.DISCARDED


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_undoes_the_last_submission_and_gives_the_item_back(reviewer, make_item):
    item = make_item()
    queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    submit(item, reviewer, action="pass")
    undone = first_pass_undo(reviewer=reviewer)
    assert undone.state == FirstPassState.UNDONE
    assert first_pass_apply_due(now=timezone.now() + timedelta(minutes=5)) == 0
    item.refresh_from_db()
    assert item.status == Status.FIRST_REVIEW
    assert Lease.objects.get(item=item).holder == reviewer
    # The reviewer may now submit again.
    submit(item, reviewer, action="pass")
    assert FirstPassReview.objects.filter(item=item).count() == 2


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_refuses_an_undo_after_the_window(reviewer, make_item):
    item = make_item()
    submit(item, reviewer, action="pass")
    with pytest.raises(ReviewError):
        first_pass_undo(reviewer=reviewer, now=timezone.now() + timedelta(seconds=31))


def test_the_database_refuses_a_pass_with_a_zero(reviewer, make_item):
    item = make_item()
    with pytest.raises(IntegrityError):
        FirstPassReview.objects.create(
            item=item,
            version=item.current_version,
            reviewer=reviewer,
            relevance=False,
            correctness=True,
            sufficiency=True,
            outcome="pass",
            effective_at=timezone.now(),
        )


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_a_held_submission_leaves_the_screen_at_once(reviewer, make_item):
    from review.services.queue import queue_next

    first, second = make_item(), make_item()
    current, _ = queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    submit(current, reviewer, action="pass")
    current, _ = queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert current.pk == second.pk != first.pk


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_says_there_is_nothing_to_undo_before_any_submission(reviewer, make_item):
    make_item()
    with pytest.raises(ReviewError) as refused:
        first_pass_undo(reviewer=reviewer)
    message = " ".join(refused.value.messages)
    assert "you have not submitted a review yet" in message
    assert "taken effect" not in message


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_says_the_last_submission_has_taken_effect(reviewer, make_item):
    item = make_item()
    submit(item, reviewer, action="pass")
    # Past the window, whether or not the periodic task has applied it yet.
    later = timezone.now() + timedelta(seconds=31)
    with pytest.raises(ReviewError, match="your last submission has taken effect"):
        first_pass_undo(reviewer=reviewer, now=later)
    assert first_pass_apply_due(now=later) == 1
    with pytest.raises(ReviewError, match="your last submission has taken effect"):
        first_pass_undo(reviewer=reviewer, now=later)


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_it_says_the_last_submission_was_already_undone(reviewer, make_item):
    item = make_item()
    submit(item, reviewer, action="pass")
    first_pass_undo(reviewer=reviewer)
    with pytest.raises(ReviewError, match="your last submission was already undone"):
        first_pass_undo(reviewer=reviewer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stem": " "}, "stem cannot be empty"),
        ({"options": {"A": "a", "B": "", "C": "c", "D": "d"}}, "B is empty"),
        ({"options": {"A": "a", "B": "b", "C": "c", "D": "d", "X": "x"}}, "no option X"),
    ],
)
def test_it_refuses_a_fix_the_database_would_refuse(reviewer, make_item, change, message):
    item = make_item()
    v = item.current_version
    fields = {"stem": v.stem, "options": v.options, "answer": "A", "cot": "new", **change}
    with pytest.raises(ReviewError, match=message):
        submit(
            item,
            reviewer,
            ones=(False, True, True),
            action="fix",
            reason="x",
            fix=ContentFix(**fields),
        )
    assert not FirstPassReview.objects.filter(item=item).exists()
