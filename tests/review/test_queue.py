from datetime import timedelta

import pytest
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import AuthorKind
from medcot.services import item_version_create
from review.models import FirstPassReview, Lease, Stage
from review.services.common import ReviewError
from review.services.queue import lease_release, queue_claim, queue_next

pytestmark = pytest.mark.django_db


def test_it_leases_the_oldest_free_item(reviewer, make_item):
    first, second = make_item(), make_item()
    claimed = queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert claimed.pk == first.pk
    lease = Lease.objects.get(item=first)
    assert lease.holder == reviewer and lease.expires_at > timezone.now()
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW).pk == second.pk


def test_it_never_hands_a_leased_item_to_someone_else(reviewer, reviewer_b, make_item):
    item = make_item()
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW).pk == item.pk
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW) is None


def test_it_returns_an_item_whose_lease_expired(reviewer, reviewer_b, make_item):
    item = make_item()
    queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    Lease.objects.filter(item=item).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW).pk == item.pk
    assert Lease.objects.get(item=item).holder == reviewer_b


def test_it_puts_the_persons_specialty_first(expert_c, make_item):
    make_item(specialty="Cardiology")
    neuro = make_item(specialty="Neurology")
    assert queue_claim(user=expert_c, stage=Stage.FIRST_REVIEW).pk == neuro.pk


def test_it_skips_items_the_person_wrote(reviewer, make_item):
    item = make_item()
    item_version_create(
        item=item, author_kind=AuthorKind.HUMAN, author=reviewer, reason="fix", cot="better"
    )
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None


def test_it_skips_items_the_person_already_reviewed(reviewer, make_item):
    item = make_item()
    FirstPassReview.objects.create(
        item=item,
        version=item.current_version,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        outcome="pass",
        effective_at=timezone.now(),
        state="applied",
    )
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None


def test_it_releases_a_skipped_item_to_others(reviewer, reviewer_b, make_item):
    item = make_item()
    queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert lease_release(user=reviewer, item_id=item.pk, stage=Stage.FIRST_REVIEW)
    assert queue_claim(user=reviewer_b, stage=Stage.FIRST_REVIEW).pk == item.pk


def test_it_claims_one_ahead_and_keeps_the_current_item_on_reload(reviewer, make_item):
    a, b, _c = make_item(), make_item(), make_item()
    current, following = queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert (current.pk, following.pk) == (a.pk, b.pk)
    again, _ = queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    assert again.pk == a.pk
    assert Lease.objects.filter(holder=reviewer).count() == 2


def test_it_only_offers_items_in_the_stage(reviewer, make_item):
    make_item(status=Status.GENERATED)
    assert queue_claim(user=reviewer, stage=Stage.FIRST_REVIEW) is None


def test_it_refuses_people_without_the_role(outsider, reviewer, make_item):
    make_item(status=Status.CONSENSUS)
    with pytest.raises(ReviewError):
        queue_claim(user=outsider, stage=Stage.FIRST_REVIEW)
    with pytest.raises(ReviewError):
        queue_claim(user=reviewer, stage=Stage.CONSENSUS)
