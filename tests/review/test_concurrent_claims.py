"""Sixteen people claiming from one queue at once on PostgreSQL: no item is handed out twice."""

from collections import Counter

import pytest

from medcot.lifecycle import Status
from review.models import Lease, Stage
from review.services import person_create
from review.services.queue import queue_claim
from tests.claim_queue import queue_fill, reviewers_create, run_together
from tests.factories import ProjectFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

THREADS = 16
ITEMS = 2000
SPECIALTIES = ("Cardiology", "Neurology", "Nephrology")


def test_it_never_hands_one_item_to_two_people():
    ids = queue_fill(project=ProjectFactory(), n=ITEMS, specialties=SPECIALTIES, prefix="cc")
    people = reviewers_create(
        prefix="claimer", specialty_sets=[[SPECIALTIES[n % 3]] for n in range(THREADS)]
    )
    claimed: dict[int, list[int]] = {person.pk: [] for person in people}

    def work(person):
        while True:
            item = queue_claim(user=person, stage=Stage.FIRST_REVIEW)
            if item is None:
                break
            claimed[person.pk].append(item.pk)

    assert run_together(work, [(person,) for person in people]) == []
    handed_out = Counter(pk for pks in claimed.values() for pk in pks)
    assert [pk for pk, n in handed_out.items() if n > 1] == []
    assert sorted(handed_out) == sorted(ids)
    # Work was shared, and the lease table agrees with what each person was told.
    assert sum(1 for pks in claimed.values() if pks) > 1
    leases = dict(
        Lease.objects.filter(stage=Stage.FIRST_REVIEW).values_list("item_id", "holder_id")
    )
    for holder, pks in claimed.items():
        assert all(leases[pk] == holder for pk in pks)


def test_two_last_scores_at_the_same_instant_make_one_decision():
    from medcot.models import Event
    from medcot.roles import ADMIN, EXPERT
    from review.models import RubricDimension
    from review.services.panels import panel_assign, panel_submit
    from tests.factories import ItemFactory

    admin = person_create(username="lead", password="x", roles=[ADMIN])
    experts = [
        person_create(username=f"exp{n}", password="x", roles=[EXPERT], specialties=["Cardiology"])
        for n in range(2)
    ]
    item = ItemFactory(status=Status.PANEL)
    panel_assign(item=item, experts=experts, actor=admin)

    def submit(expert):
        panel_submit(
            item=item,
            expert=expert,
            scores=dict.fromkeys(RubricDimension.values, 2),
            decision="accept",
            answer="A",
        )

    assert run_together(submit, [(expert,) for expert in experts]) == []
    item.refresh_from_db()
    assert item.status == Status.APPROVED
    approvals = Event.objects.filter(item=item, kind="transition", to_status=Status.APPROVED)
    assert approvals.count() == 1
