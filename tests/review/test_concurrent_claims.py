"""Sixteen people claiming from one queue at once on PostgreSQL: no item is handed out twice."""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item, ItemVersion
from review.models import Lease, Stage
from review.roles import REVIEWER
from review.services import person_create
from review.services.queue import queue_claim
from tests.factories import ProjectFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

THREADS = 16
ITEMS = 2000


def make_queue(n: int) -> list[int]:
    project = ProjectFactory()
    items = Item.objects.bulk_create(
        [
            Item(
                project=project,
                external_id=f"cc-{i}",
                language="en",
                specialty=("Cardiology", "Neurology", "Nephrology")[i % 3],
                status=Status.FIRST_REVIEW,
            )
            for i in range(n)
        ]
    )
    versions = ItemVersion.objects.bulk_create(
        [
            ItemVersion(
                item=item,
                number=1,
                stem=f"Question {item.pk}",
                option_a="a",
                option_b="b",
                option_c="c",
                option_d="d",
                answer="A",
                author_kind=AuthorKind.IMPORT,
            )
            for item in items
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE medcot_item SET current_version_id = v.id FROM medcot_itemversion v "
            "WHERE v.item_id = medcot_item.id AND medcot_item.project_id = %s",
            [project.pk],
        )
    assert len(versions) == n
    return [item.pk for item in items]


def test_it_never_hands_one_item_to_two_people():
    ids = make_queue(ITEMS)
    people = [
        person_create(
            username=f"claimer{n}",
            password="x",
            roles=[REVIEWER],
            specialties=[("Cardiology", "Neurology", "Nephrology")[n % 3]],
        )
        for n in range(THREADS)
    ]
    claimed: dict[int, list[int]] = {person.pk: [] for person in people}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(person):
        try:
            start.wait()
            while True:
                item = queue_claim(user=person, stage=Stage.FIRST_REVIEW)
                if item is None:
                    break
                claimed[person.pk].append(item.pk)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
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
    from review.models import RubricDimension
    from review.roles import ADMIN, EXPERT
    from review.services.panels import panel_assign, panel_submit
    from tests.factories import ItemFactory

    admin = person_create(username="lead", password="x", roles=[ADMIN])
    experts = [
        person_create(username=f"exp{n}", password="x", roles=[EXPERT], specialties=["Cardiology"])
        for n in range(2)
    ]
    item = ItemFactory(status=Status.PANEL)
    panel_assign(item=item, experts=experts, actor=admin)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def submit(expert):
        try:
            start.wait()
            panel_submit(
                item=item,
                expert=expert,
                scores=dict.fromkeys(RubricDimension.values, 2),
                decision="accept",
                answer="A",
            )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(expert,)) for expert in experts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    item.refresh_from_db()
    assert item.status == Status.APPROVED
    approvals = Event.objects.filter(item=item, kind="transition", to_status=Status.APPROVED)
    assert approvals.count() == 1
