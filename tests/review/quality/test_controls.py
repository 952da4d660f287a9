"""Control items: served unseen, answered like any item, kept apart from real verdicts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from medcot.lifecycle import Status
from medcot.models import Event, Item, Project
from review.models import ConsensusVote, FirstPassReview, Lease, Stage
from review.quality.controls import control_accuracy, control_create_from_item
from review.quality.models import ControlAnswer, ReliabilityAlert
from review.services.common import ReviewError
from review.services.consensus import consensus_vote
from review.services.first_pass import first_pass_submit
from review.services.queue import queue_claim
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db

NEXT = "/api/review/first-pass/next/"


def _every(project, n):
    Project.objects.filter(pk=project.pk).update(control_every=n)


def _pass(item, reviewer):
    return first_pass_submit(
        item=item,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
        seconds_on_item=30,
    )


def _discard(item, reviewer):
    return first_pass_submit(
        item=item,
        reviewer=reviewer,
        relevance=True,
        correctness=False,
        sufficiency=True,
        action="discard",
        reason="wrong key",
        seconds_on_item=30,
    )


def test_it_copies_a_reviewed_item_into_the_queue_with_its_known_verdict(make_control):
    control = make_control(valid=True)
    assert control.item.status == Status.FIRST_REVIEW
    assert control.expected_valid is True
    assert control.item.current_version.stem == control.source_item.current_version.stem
    assert control.item.pk != control.source_item.pk


def test_it_refuses_an_item_without_a_known_verdict(make_item, admin_user):
    with pytest.raises(ReviewError, match="known verdict"):
        control_create_from_item(admin=admin_user, item=make_item(status=Status.CONSENSUS))


def test_a_control_answer_is_never_a_first_pass_verdict(make_control, make_item, reviewer, project):
    _every(project, 1)
    make_item()
    control = make_control(valid=True)
    claimed = queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert claimed.pk == control.item_id
    review = _pass(claimed, reviewer)
    # The submission looked like any other to the reviewer...
    assert review.pk is not None and review.outcome == "pass"
    # ...but only the control answer remains: no verdict, no lease, no move.
    assert not FirstPassReview.objects.filter(item=control.item).exists()
    assert not Lease.objects.filter(item=control.item).exists()
    answer = ControlAnswer.objects.get(control=control, reviewer=reviewer)
    assert answer.correct and answer.given_valid
    control.item.refresh_from_db()
    assert control.item.status == Status.FIRST_REVIEW
    assert FirstPassReview.objects.count() == 0


def test_a_wrong_answer_counts_against_the_reviewer(make_control, reviewer, project):
    _every(project, 1)
    control = make_control(valid=True)
    _discard(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    assert ControlAnswer.objects.get(control=control).correct is False
    figures = control_accuracy(project_id=project.pk, reviewer_id=reviewer.pk)
    assert figures["n"] == 1 and figures["accuracy"] == 0.0
    assert figures["low"] == 0.0 and 0.7 < figures["high"] < 0.8


def test_a_control_is_served_once_per_person_and_to_others_after(
    make_control, reviewer, reviewer_b, project
):
    _every(project, 1)
    control = make_control()
    _pass(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW).pk == control.item_id


def test_the_real_queue_never_hands_out_a_control_when_controls_are_off(
    make_control, make_item, reviewer, project
):
    _every(project, 0)
    make_control()
    real = make_item()
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW).pk == real.pk
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None


def test_a_claim_runs_the_same_statements_for_a_control_and_a_real_item(
    make_control, make_item, reviewer, reviewer_b, project
):
    """No timing tell: serving a control or a real item costs the same queries."""
    _every(project, 1)
    make_control()
    make_item()
    with CaptureQueriesContext(connection) as with_control:
        assert hasattr(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), "control")
    _every(project, 0)
    with CaptureQueriesContext(connection) as without:
        assert not hasattr(queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW), "control")
    assert len(with_control) == len(without)


def test_the_api_shows_a_control_exactly_like_a_real_item(
    make_control, make_item, reviewer, reviewer_b, project
):
    _every(project, 1)
    make_control()
    make_item()
    make_item()
    make_item()
    control_body = token_client(reviewer).post(NEXT, {}, format="json").json()["item"]
    _every(project, 0)
    real_body = token_client(reviewer_b).post(NEXT, {}, format="json").json()["item"]
    assert Item.objects.get(pk=control_body["id"]).control is not None
    assert set(control_body) == set(real_body)
    for field in ("status", "kind", "language", "version", "revision_status", "status_reason"):
        assert control_body[field] == real_body[field], field


def test_the_page_shows_a_control_like_a_real_item(make_control, reviewer, client, project):
    _every(project, 1)
    control = make_control()
    client.force_login(reviewer)
    page = client.get("/review/first-pass/").content.decode()
    assert control.item.current_version.stem in page
    assert "control" not in page.lower().replace("controls", "")


def test_a_consensus_control_is_never_a_vote_nor_approved(
    make_control, expert_a, expert_b, project
):
    _every(project, 1)
    control = make_control(stage=Status.CONSENSUS)
    for expert in (expert_a, expert_b):
        item = queue_claim(user=expert, stage=Stage.CONSENSUS)
        assert item.pk == control.item_id
        vote = consensus_vote(item=item, expert=expert, answer="A", approve_phrasing=True)
        assert vote.pk is not None
    control.item.refresh_from_db()
    assert control.item.status == Status.CONSENSUS
    assert not ConsensusVote.objects.exists()
    assert ControlAnswer.objects.filter(control=control, correct=True).count() == 2
    assert not Item.objects.filter(status=Status.APPROVED, control__isnull=False).exists()


def test_the_alert_fires_at_the_threshold_with_the_minimum_of_controls(
    make_control, reviewer, project
):
    Project.objects.filter(pk=project.pk).update(
        control_every=1, control_minimum=3, control_threshold=70
    )
    controls = [make_control(valid=True) for _ in range(4)]
    # Two wrong answers: below the minimum number of controls, no alert yet.
    for _ in range(2):
        _discard(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    assert not ReliabilityAlert.objects.exists()
    # A third (2 of 3 wrong = 33 % < 70 %): the alert fires, with an event.
    _pass(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    alert = ReliabilityAlert.objects.get()
    assert alert.reviewer == reviewer and alert.n_controls == 3
    assert round(alert.accuracy, 3) == 0.333
    assert Event.objects.filter(kind="reviewer_below_control_threshold").count() == 1
    # One open alert per reviewer, not one per answer.
    _discard(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    assert ReliabilityAlert.objects.count() == 1
    assert ControlAnswer.objects.filter(control__in=controls).count() == 4


def test_no_alert_at_or_above_the_threshold(make_control, reviewer, project):
    Project.objects.filter(pk=project.pk).update(
        control_every=1, control_minimum=3, control_threshold=66
    )
    for _ in range(3):
        make_control(valid=True)
    _discard(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    _pass(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    _pass(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    # 2 of 3 = 66.7 %: not below 66 %.
    assert not ReliabilityAlert.objects.exists()


def test_controls_stay_out_of_the_funnel_of_the_card_and_the_overview(
    make_control, make_item, project
):
    from review.reports.selectors import project_funnel
    from review.selectors import overview_stats

    make_control()
    make_item()
    funnel = project_funnel(project=project)
    # The control's source (an approved item) and the real item; not the copy.
    assert funnel["constructed"] == 2
    stats = overview_stats()
    assert dict(stats["counts"])[Status.FIRST_REVIEW] == 1
    assert [q["depth"] for q in stats["queues"] if q["status"] == Status.FIRST_REVIEW] == [1]
