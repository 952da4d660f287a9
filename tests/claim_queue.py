"""A first-review queue full of items, reviewers to claim from it, and a way to have them all
claim at the same instant: the setup of the concurrent-claim test and of the claim benchmark
(bench/queue_claim.py), kept in one place so the benchmark times the queue the test checks.

This is fixture code and lives under tests/ rather than in an app: it writes items straight
into `first_review` in bulk, as the factories do, while in the apps only
`medcot.lifecycle.transition()` assigns a status."""

import threading
from collections.abc import Callable, Iterable, Sequence

from django.db import connection, connections

from medcot.lifecycle import Status
from medcot.models import AuthorKind, Item, ItemVersion, Project
from medcot.roles import REVIEWER
from review.services import person_create

BATCH = 10_000


def queue_fill(*, project: Project, n: int, specialties: Sequence[str], prefix: str) -> list[int]:
    """Puts `n` items with one imported version each into `project`'s first-review queue,
    their specialties taken in turn from `specialties`; returns their ids in order."""
    ids: list[int] = []
    for start in range(0, n, BATCH):
        items = Item.objects.bulk_create(
            [
                Item(
                    project=project,
                    external_id=f"{prefix}-{i}",
                    language="en",
                    specialty=specialties[i % len(specialties)],
                    status=Status.FIRST_REVIEW,
                )
                for i in range(start, min(n, start + BATCH))
            ]
        )
        ItemVersion.objects.bulk_create(
            [
                ItemVersion(
                    item=item,
                    number=1,
                    stem=f"Question {item.external_id}",
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
        ids += [item.pk for item in items]
    # One statement instead of a save() per item: the benchmark fills 100,000 of them.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE medcot_item SET current_version_id = v.id FROM medcot_itemversion v "
            "WHERE v.item_id = medcot_item.id AND medcot_item.project_id = %s",
            [project.pk],
        )
    return ids


def reviewers_create(*, prefix: str, specialty_sets: Iterable[Sequence[str]]) -> list:
    """One reviewer per entry of `specialty_sets`, named `<prefix>-<n>`; an empty set makes a
    reviewer who may claim items of every specialty."""
    return [
        person_create(
            username=f"{prefix}-{n}",
            password="x",  # throwaway test and bench users
            roles=[REVIEWER],
            specialties=list(specialties),
        )
        for n, specialties in enumerate(specialty_sets)
    ]


def run_together(target: Callable[..., object], calls: Sequence[tuple]) -> list[BaseException]:
    """Runs `target(*args)` for every `args` in `calls`, each in a thread of its own, all
    released at the same instant; waits for every one and returns what they raised.

    Each thread closes its database connections when it ends: Django opens one per thread,
    and one left open would keep PostgreSQL from dropping the test database afterwards."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(args: tuple) -> None:
        try:
            start.wait()
            target(*args)
        except BaseException as exc:  # handed back to the caller
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(args,)) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
