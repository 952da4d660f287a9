"""Queue claim latency at depth: 100,000 items waiting for first-pass review on PostgreSQL.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/medcot_review
    .venv/bin/python bench/queue_claim.py

The database named in DATABASE_URL is DROPPED and created afresh first (pass --keep to reuse
it), so earlier runs' items do not sit in the queue ahead of this run's.

Fills a fresh project with N queued items (20 specialties), then lets reviewers work the queue
the way people do: each claim leases the next item; the item claimed two turns earlier is
reviewed (it leaves the queue), so every reviewer holds about two leases at a time. Only the
claim itself is timed, sequentially and then from several threads at once. Target: p95 < 25 ms.
The queue and the reviewers are made by tests/claim_queue.py, as for the concurrent-claim test.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")

SPECIALTIES = [f"Specialty {n:02d}" for n in range(20)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def recreate_database(url: str) -> None:
    import psycopg
    from django.conf import settings
    from django.db import connections

    name = settings.DATABASES["default"]["NAME"]
    connections.close_all()
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def fill(n: int):
    from django.db import connection

    from medcot.services import project_create
    from tests.claim_queue import queue_fill

    project = project_create(name=f"Queue bench {time.time_ns()}")
    started = time.perf_counter()
    queue_fill(project=project, n=n, specialties=SPECIALTIES, prefix="qb")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE medcot_item; ANALYZE medcot_itemversion;")
    print(f"filled {n:,} queued items in {time.perf_counter() - started:.1f} s")
    return project


def reviewers(count: int, tag: str):
    from tests.claim_queue import reviewers_create

    # One in four reviewers has no specialty, so claims from every specialty.
    return reviewers_create(
        prefix=f"qb-{tag}",
        specialty_sets=[[SPECIALTIES[n % len(SPECIALTIES)]] if n % 4 else [] for n in range(count)],
    )


def work(person, project_id: int, claims: int, timings: list[float]) -> None:
    from django.db import connections

    from medcot.lifecycle import Status
    from medcot.models import Item
    from review.models import Lease, Stage
    from review.services.queue import queue_claim

    held: list[int] = []
    try:
        for _ in range(claims):
            t0 = time.perf_counter()
            item = queue_claim(user=person, stage=Stage.FIRST_REVIEW, project_id=project_id)
            timings.append((time.perf_counter() - t0) * 1000)
            if item is None:
                break
            held.append(item.pk)
            if len(held) > 2:
                # The reviewer finishes the older item: it leaves the queue with its lease.
                done = held.pop(0)
                Item.objects.filter(pk=done).update(status=Status.REANSWERING)
                Lease.objects.filter(item_id=done).delete()
    finally:
        connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=2_000, help="sequential claims to time")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--keep", action="store_true", help="do not recreate the database")
    args = parser.parse_args()

    if not os.getenv("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (SKIP LOCKED is the point).")
    import django

    django.setup()
    if not args.keep:
        recreate_database(os.environ["DATABASE_URL"])
    from django.core.management import call_command

    from tests.claim_queue import run_together

    call_command("migrate", verbosity=0)
    project = fill(args.items)
    tag = str(time.time_ns())

    people = reviewers(20, tag)
    sequential: list[float] = []
    per_person = max(1, args.claims // len(people))
    for person in people:
        work(person, project.pk, per_person, sequential)
    print(
        f"sequential: {len(sequential):,} claims  p50 {percentile(sequential, 0.5):.2f} ms  "
        f"p95 {percentile(sequential, 0.95):.2f} ms  p99 {percentile(sequential, 0.99):.2f} ms  "
        f"mean {statistics.fmean(sequential):.2f} ms"
    )

    crowd = reviewers(args.threads, tag + "c")
    lists: list[list[float]] = [[] for _ in crowd]
    started = time.perf_counter()
    errors = run_together(
        work,
        [
            (person, project.pk, args.per_thread, timings)
            for person, timings in zip(crowd, lists, strict=True)
        ],
    )
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    concurrent = [t for timings in lists for t in timings]
    print(
        f"{args.threads} threads: {len(concurrent):,} claims in {elapsed:.1f} s  "
        f"p50 {percentile(concurrent, 0.5):.2f} ms  p95 {percentile(concurrent, 0.95):.2f} ms  "
        f"p99 {percentile(concurrent, 0.99):.2f} ms"
    )
    target = percentile(sequential, 0.95)
    print(f"target p95 < 25 ms (sequential): {'met' if target < 25 else 'MISSED'}")


if __name__ == "__main__":
    main()
