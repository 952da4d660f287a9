"""`run_stats`: the run page's call figures, with latency percentiles worked out in the database
(`percentile_disc` on PostgreSQL, ORDER BY … OFFSET elsewhere) by nearest rank."""

import math
import random
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import LLMCall, LLMProfile, Run
from generation.selectors import (
    latency_percentiles,
    latency_percentiles_by_offset,
    nearest_rank,
    run_stats,
)

pytestmark = pytest.mark.django_db

# Sorted: 80 80 80 95 120 | 210 300 450 610 | 1000. Nearest rank over ten values picks the
# 5th (p50), the 9th (p90) and the 10th (p99).
KNOWN = [120, 80, 300, 80, 95, 1000, 450, 210, 80, 610]


@pytest.fixture
def profile():
    return LLMProfile.objects.create(name="p", base_url="http://127.0.0.1:9/v1", model="m")


@pytest.fixture
def make_run(project, profile):
    def make(latencies, *, failed=()):
        run = Run.objects.create(project=project, profile=profile, stage="cot")
        calls = [
            LLMCall(
                profile=profile,
                run=run,
                task="cot",
                model="m",
                outcome=LLMCall.Outcome.OK,
                prompt_tokens=10,
                completion_tokens=5,
                cost=Decimal("0.25"),
                latency_ms=latency,
            )
            for latency in latencies
        ]
        calls += [
            LLMCall(
                profile=profile,
                run=run,
                task="cot",
                model="m",
                outcome=LLMCall.Outcome.TRANSIENT,
                latency_ms=latency,
            )
            for latency in failed
        ]
        LLMCall.objects.bulk_create(calls)
        return run

    return make


def reference(values: list[int], fraction: float) -> int:
    """Nearest rank by the textbook definition: the smallest value with at least `fraction`
    of the values at or below it."""
    ordered = sorted(values)
    for rank, value in enumerate(ordered, start=1):
        if rank >= fraction * len(ordered):
            return value
    raise AssertionError("unreachable")


def test_it_reports_nearest_rank_latencies_of_the_successful_calls(make_run):
    run = make_run(KNOWN, failed=[9000, 12000])
    make_run([1, 2, 3])  # another run's calls are not counted
    stats = run_stats(run=run)
    assert (stats.calls, stats.ok, stats.failed) == (12, 10, 2)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.cost) == (100, 50, Decimal("2.5"))
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == (120, 610, 1000)


def test_it_has_no_percentiles_without_a_successful_call(make_run, project, profile):
    stats = run_stats(run=make_run([], failed=[500]))
    assert (stats.calls, stats.ok, stats.failed) == (1, 0, 1)
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == (None, None, None)
    empty = run_stats(run=Run.objects.create(project=project, profile=profile, stage="cot"))
    assert (empty.calls, empty.p50_ms, empty.cost, empty.calls_per_second) == (
        0,
        None,
        Decimal(0),
        None,
    )


def test_it_agrees_with_the_textbook_definition_on_random_latencies(make_run):
    rng = random.Random(7)
    for size in (1, 2, 3, 7, 99, 100, 101, 257):
        latencies = [rng.randint(1, 40) * 25 for _ in range(size)]  # many equal values
        stats = run_stats(run=make_run(latencies))
        expected = tuple(reference(latencies, f) for f in (0.5, 0.9, 0.99))
        assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == expected, size


def test_the_portable_path_fetches_three_values_not_every_latency(make_run):
    run = make_run(KNOWN)
    calls = LLMCall.objects.filter(run=run, outcome=LLMCall.Outcome.OK)
    with CaptureQueriesContext(connection) as queries:
        assert latency_percentiles_by_offset(calls=calls) == [120, 610, 1000]
    # One count and one single-row query per percentile.
    assert len(queries) == 4
    assert all("LIMIT 1" in q["sql"] for q in queries.captured_queries[1:])
    assert latency_percentiles_by_offset(calls=calls.none()) == [None, None, None]


def test_it_ranks_like_percentile_disc():
    assert [nearest_rank(10, f) for f in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)] == [1, 1, 5, 9, 10, 10]
    assert [nearest_rank(1, f) for f in (0.5, 0.9, 0.99)] == [1, 1, 1]
    assert nearest_rank(1000, 0.99) == 990 and nearest_rank(1001, 0.99) == math.ceil(990.99)


@pytest.mark.services
def test_postgresql_computes_the_same_percentiles_as_the_portable_path(make_run):
    rng = random.Random(11)
    for size in (1, 2, 10, 101, 1000):
        latencies = [rng.randint(1, 400) * 5 for _ in range(size)]
        run = make_run(latencies, failed=[99999])
        calls = LLMCall.objects.filter(run=run)
        with CaptureQueriesContext(connection) as queries:
            in_database = latency_percentiles(calls=calls)
        # One query, the ordered-set aggregate: the latencies never reach Python.
        assert len(queries) == 1 and "percentile_disc" in queries[0]["sql"]
        portable = latency_percentiles_by_offset(calls=calls.filter(outcome="ok"))
        expected = [reference(latencies, f) for f in (0.5, 0.9, 0.99)]
        assert in_database == portable == expected, size
    run = make_run(KNOWN)
    stats = run_stats(run=run)
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == (120, 610, 1000)


def test_the_run_page_shows_the_percentiles(client, admin_user, make_run, project):
    run = make_run(KNOWN, failed=[9000])
    client.force_login(admin_user)
    url = reverse("generation_run_detail", args=[project.slug, run.pk])
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    # Through the duration filter, each figure kept on one line.
    assert re.sub(r"</?span[^>]*>", "", html).count("120 ms / 610 ms / 1.0 s") == 1
    assert '<span class="nowrap">610 ms</span>' in html
