"""Double review: a second independent first-pass verdict on a sample of items."""

import pytest
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import Event, Project
from review.models import FirstPassReview, Stage
from review.quality.double import double_review_drawn, first_pass_kappa
from review.quality.models import DoubleReview, ReliabilityAlert
from review.services.queue import queue_claim
from tests.review.quality.test_controls import _discard, _pass

pytestmark = pytest.mark.django_db


def _percent(project, n):
    Project.objects.filter(pk=project.pk).update(double_review_percent=n, control_every=0)
    project.refresh_from_db()


def test_a_drawn_item_waits_for_a_second_reviewer_and_goes_on_when_they_agree(
    make_item, reviewer, reviewer_b, project
):
    _percent(project, 100)
    item = make_item()
    _pass(queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW), reviewer)
    item.refresh_from_db()
    assert item.status == Status.FIRST_REVIEW
    double = DoubleReview.objects.get(item=item)
    assert double.state == DoubleReview.State.WAITING and double.why == "sample"
    # The first reviewer is not handed it again; the next person is.
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW).pk == item.pk
    _pass(item, reviewer_b)
    item.refresh_from_db()
    double.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert double.state == DoubleReview.State.AGREED
    assert FirstPassReview.objects.filter(item=item).count() == 2


def test_a_disagreement_goes_to_the_experts_instead_of_a_discard(
    make_item, reviewer, reviewer_b, project
):
    _percent(project, 100)
    item = make_item()
    _pass(item, reviewer)
    _discard(item, reviewer_b)
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert DoubleReview.objects.get(item=item).state == DoubleReview.State.DISAGREED
    assert Event.objects.filter(item=item, kind="double_review_disagreed").exists()


def test_two_discards_discard_the_item(make_item, reviewer, reviewer_b, project):
    _percent(project, 100)
    item = make_item()
    _discard(item, reviewer)
    item.refresh_from_db()
    assert item.status == Status.FIRST_REVIEW
    _discard(item, reviewer_b)
    item.refresh_from_db()
    assert item.status == Status.DISCARDED


def test_nothing_is_drawn_at_zero_percent_and_about_the_share_otherwise(make_item, project):
    _percent(project, 0)
    item = make_item()
    assert double_review_drawn(item=item, reviewer_id=1) is None
    _percent(project, 30)
    drawn = sum(
        double_review_drawn(item=make_item(), reviewer_id=1) is not None for _ in range(200)
    )
    assert 35 <= drawn <= 85


def test_a_second_opinion_draws_every_verdict_of_the_reviewer(make_item, reviewer, project):
    _percent(project, 0)
    ReliabilityAlert.objects.create(
        project=project,
        reviewer=reviewer,
        accuracy=0.5,
        n_controls=10,
        second_opinion_at=timezone.now(),
    )
    item = make_item()
    _pass(item, reviewer)
    assert DoubleReview.objects.get(item=item).why == "second_opinion"


def test_first_pass_kappa_is_measured_on_the_pairs(make_item, reviewer, reviewer_b, project):
    _percent(project, 100)
    for first, second in [(_pass, _pass), (_discard, _discard), (_pass, _discard), (_pass, _pass)]:
        item = make_item()
        first(item, reviewer)
        second(item, reviewer_b)
    kappa = first_pass_kappa(project_id=project.pk)
    assert kappa.n_items == 4
    # Observed agreement 3/4; expected 0.75·0.5 + 0.25·0.5 = 0.5; κ = 0.5.
    assert kappa.value == pytest.approx(0.5)
