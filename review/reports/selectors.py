"""The project's reports: the funnel and distributions (paper §3.2, Figures 3 and 4), agreement
streamed through the accumulators, people and machines, and the dashboard that shows them all.
The release card reads the same figures for the items it releases."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import OPTION_LABELS, Event, Item, Project, RevisionStatus
from review.models import (
    ConsensusVote,
    FirstPassReview,
    FirstPassState,
    PanelDecision,
    RubricDimension,
    RubricScore,
)
from review.reports.agreement import Accumulator, summary_as_dict
from review.selectors import expert_pseudonyms, pseudonym

DIMENSIONS = tuple(RubricDimension.values)
SCORES = (0, 1, 2)
FILTER_KEYS = ("specialties", "languages", "question_types")


# ---------------------------------------------------------------------------------------------
# The funnel and distributions (paper §3.2, Figures 3 and 4)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def project_funnel(*, project: Project) -> dict:
    """The paper's §3.2 funnel, live: constructed → confirmed by first pass → five-strike
    escalations → finalized (unrevised / modified) and discarded."""
    # Control copies (review/quality) are not items of the data set: they stay out of the funnel.
    items = Item.objects.filter(project=project, control__isnull=True)
    by_status = dict(
        items.order_by().values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    constructed = sum(by_status.values())
    seeds = items.filter(kind="seed").count()
    first_pass = (
        FirstPassReview.objects.filter(item__project=project, state=FirstPassState.APPLIED)
        .order_by()
        .values("outcome")
        .annotate(n=Count("item", distinct=True))
    )
    fp = {row["outcome"]: row["n"] for row in first_pass}
    confirmed = fp.get("pass", 0) + fp.get("fixed", 0)
    escalated = (
        Event.objects.filter(project=project, to_status=Status.PANEL)
        .order_by()
        .values("item")
        .distinct()
        .count()
    )
    approved = by_status.get(Status.APPROVED, 0)
    modified = items.filter(status=Status.APPROVED, revision_status=RevisionStatus.MODIFIED).count()
    unrevised = approved - modified
    discarded = by_status.get(Status.DISCARDED, 0)
    decided = approved + discarded
    return {
        "constructed": constructed,
        "seeds": seeds,
        "synthetic": constructed - seeds,
        "confirmed_first_pass": confirmed,
        "fixed_first_pass": fp.get("fixed", 0),
        "discarded_first_pass": fp.get("discarded", 0),
        "escalated": escalated,
        "escalated_share": _share(escalated, confirmed),
        "finalized": approved,
        "unrevised": unrevised,
        "modified": modified,
        "discarded": discarded,
        "decided": decided,
        "unrevised_share": _share(unrevised, decided),
        "modified_share": _share(modified, decided),
        "discarded_share": _share(discarded, decided),
        "in_progress": constructed - decided,
        "by_status": {s: by_status.get(s, 0) for s in Status.values},
    }


def funnel_steps(funnel: dict, labels: dict[str, str]) -> list[tuple[str, int]]:
    return [
        (labels["constructed"], funnel["constructed"]),
        (labels["confirmed_first_pass"], funnel["confirmed_first_pass"]),
        (labels["escalated"], funnel["escalated"]),
        (labels["finalized"], funnel["finalized"]),
    ]


def item_distributions(*, project: Project, status: str | None = None) -> dict:
    """Counts by specialty, cognitive level, difficulty, language and question type, for all
    items or for those in one status."""
    items = Item.objects.filter(project=project)
    if status:
        items = items.filter(status=status)

    def counts(field: str) -> list[tuple[str, int]]:
        return list(
            items.order_by()
            .values(field)
            .annotate(n=Count("id"))
            .order_by("-n", field)
            .values_list(field, "n")
        )

    return {
        "specialty": counts("specialty"),
        "cognitive_level": counts("cognitive_level"),
        "difficulty": counts("difficulty"),
        "language": counts("language"),
        "question_type": counts("question_type"),
    }


def rubric_distributions(*, project: Project) -> dict[str, dict]:
    """Per dimension: how many 0s, 1s and 2s (`counts[score]`), the mean, and the number of
    scores."""
    rows = (
        RubricScore.objects.filter(item__project=project)
        .order_by()
        .values("dimension", "score")
        .annotate(n=Count("id"))
        .values_list("dimension", "score", "n")
    )
    result = {d: {"counts": [0] * len(SCORES), "n": 0, "mean": None} for d in DIMENSIONS}
    for dimension, score, n in rows:
        if dimension in result and score in SCORES:
            result[dimension]["counts"][score] += n
    for entry in result.values():
        finish_rubric_entry(entry)
    return result


def finish_rubric_entry(entry: dict) -> None:
    entry["n"] = sum(entry["counts"])
    entry["mean"] = (
        sum(s * c for s, c in zip(SCORES, entry["counts"], strict=True)) / entry["n"]
        if entry["n"]
        else None
    )


# ---------------------------------------------------------------------------------------------
# Agreement, streamed through the accumulators


def _rubric_agreement(project: Project, pseudonyms) -> dict[str, Accumulator]:
    """Per rubric dimension, the scores of each item and round, streamed in order."""
    rubric = {d: Accumulator(kind="ordinal", categories=SCORES) for d in DIMENSIONS}
    current: tuple | None = None
    unit: dict[str, dict[str, int]] = defaultdict(dict)

    def flush_rubric() -> None:
        for dimension, by_rater in unit.items():
            if dimension in rubric:
                rubric[dimension].add(by_rater)
        unit.clear()

    for item_id, round_, expert_id, dimension, score in (
        RubricScore.objects.filter(item__project=project)
        .order_by("item_id", "round", "expert_id")
        .values_list("item_id", "round", "expert_id", "dimension", "score")
        .iterator(chunk_size=5000)
    ):
        if (item_id, round_) != current:
            flush_rubric()
            current = (item_id, round_)
        unit[dimension][pseudonym(pseudonyms, expert_id)] = score
    flush_rubric()
    return rubric


def _consensus_agreement(project: Project, pseudonyms) -> tuple[Accumulator, Accumulator]:
    """The consensus votes on each version: on its phrasing (binary) and its key (nominal)."""
    phrasing = Accumulator(kind="binary", categories=(False, True))
    key = Accumulator(kind="nominal", categories=OPTION_LABELS)
    current: tuple | None = None
    votes_phrasing: dict[str, bool] = {}
    votes_key: dict[str, str] = {}
    for item_id, version_id, expert_id, answer, approve in (
        ConsensusVote.objects.filter(item__project=project)
        .order_by("item_id", "version_id", "expert_id")
        .values_list("item_id", "version_id", "expert_id", "answer", "approve_phrasing")
        .iterator(chunk_size=5000)
    ):
        if (item_id, version_id) != current:
            phrasing.add(votes_phrasing)
            key.add(votes_key)
            votes_phrasing, votes_key = {}, {}
            current = (item_id, version_id)
        rater = pseudonym(pseudonyms, expert_id)
        votes_phrasing[rater] = approve
        votes_key[rater] = answer
    phrasing.add(votes_phrasing)
    key.add(votes_key)
    return phrasing, key


def _panel_agreement(project: Project, pseudonyms) -> Accumulator:
    """The panel decisions of each panel and round."""
    decisions = Accumulator(kind="nominal", categories=("accept", "revise", "discard"))
    current: tuple | None = None
    by_expert: dict[str, str] = {}
    for panel_id, round_, expert_id, decision in (
        PanelDecision.objects.filter(item__project=project)
        .order_by("panel_id", "round", "expert_id")
        .values_list("panel_id", "round", "expert_id", "decision")
        .iterator(chunk_size=5000)
    ):
        if (panel_id, round_) != current:
            decisions.add(by_expert)
            by_expert = {}
            current = (panel_id, round_)
        by_expert[pseudonym(pseudonyms, expert_id)] = decision
    decisions.add(by_expert)
    return decisions


def project_agreement(*, project: Project) -> dict:
    """Agreement statistics over the project's expert judgements, each with the items behind
    it: rubric dimensions (ordinal, per item and round), consensus votes on the same version
    (phrasing: binary; key: nominal) and panel decisions (nominal, per round)."""
    pseudonyms = expert_pseudonyms()
    rubric = _rubric_agreement(project, pseudonyms)
    phrasing, key = _consensus_agreement(project, pseudonyms)
    decisions = _panel_agreement(project, pseudonyms)
    return {
        "rubric": {d: summary_as_dict(acc.summary()) for d, acc in rubric.items()},
        "consensus_phrasing": summary_as_dict(phrasing.summary()),
        "consensus_key": summary_as_dict(key.summary()),
        "panel_decision": summary_as_dict(decisions.summary()),
    }


# ---------------------------------------------------------------------------------------------
# People and machines


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _judgements_per_day(*, project: Project, since) -> Counter:
    """First-pass verdicts (not undone), panel decisions and consensus votes per day."""
    per_day: Counter = Counter()
    for qs in (
        FirstPassReview.objects.exclude(state=FirstPassState.UNDONE),
        PanelDecision.objects.all(),
        ConsensusVote.objects.all(),
    ):
        for day, n in (
            qs.filter(item__project=project, created_at__gte=since)
            .annotate(day=TruncDate("created_at"))
            .order_by()
            .values("day")
            .annotate(n=Count("id"))
            .values_list("day", "n")
        ):
            per_day[day] += n
    return per_day


def reviewer_throughput(*, project: Project, days: int = 14) -> dict:
    """Per person (pseudonym): first-pass reviews, panel decisions and consensus votes, with the
    median seconds spent per item; and reviews per day over the last `days` days."""
    pseudonyms = expert_pseudonyms()
    people: dict[str, dict] = {}

    def person(user_id: int) -> dict:
        name = pseudonym(pseudonyms, user_id)
        return people.setdefault(
            name,
            {"who": name, "first_pass": 0, "panel": 0, "consensus": 0, "seconds": []},
        )

    for reviewer_id, seconds in (
        FirstPassReview.objects.filter(item__project=project)
        .exclude(state=FirstPassState.UNDONE)
        .values_list("reviewer_id", "seconds_on_item")
        .iterator(chunk_size=5000)
    ):
        p = person(reviewer_id)
        p["first_pass"] += 1
        if seconds:
            p["seconds"].append(seconds)
    for expert_id, seconds in (
        PanelDecision.objects.filter(item__project=project)
        .values_list("expert_id", "seconds_on_item")
        .iterator(chunk_size=5000)
    ):
        p = person(expert_id)
        p["panel"] += 1
        if seconds:
            p["seconds"].append(seconds)
    for expert_id, n in (
        ConsensusVote.objects.filter(item__project=project)
        .order_by()
        .values("expert_id")
        .annotate(n=Count("id"))
        .values_list("expert_id", "n")
    ):
        person(expert_id)["consensus"] += n

    rows = []
    for p in people.values():
        seconds = p.pop("seconds")
        p["median_seconds"] = _median(seconds)
        p["total"] = p["first_pass"] + p["panel"] + p["consensus"]
        rows.append(p)
    rows.sort(key=lambda p: (-p["total"], p["who"]))

    per_day = _judgements_per_day(project=project, since=timezone.now() - timedelta(days=days))
    today = timezone.localdate()
    days_list = [today - timedelta(days=d) for d in range(days - 1, -1, -1)]
    return {
        "people": rows,
        "per_day": [(d.isoformat(), per_day.get(d, 0)) for d in days_list],
    }


def llm_usage_by_run(*, project: Project, limit: int = 20) -> list[dict]:
    """Per run (newest first): calls by outcome, tokens, latency percentiles and cost. The
    percentiles are worked out in the database (a run holds up to ~100,000 calls)."""
    from generation.public import LLMCall, Run, latency_percentiles

    runs = list(
        Run.objects.filter(project=project)
        .select_related("profile")
        .order_by("-created_at", "-id")[:limit]
    )
    result = []
    for run in runs:
        calls = LLMCall.objects.filter(run=run)
        totals = calls.aggregate(
            n=Count("id"),
            ok=Count("id", filter=Q(outcome="ok")),
            prompt=Coalesce(Sum("prompt_tokens"), 0),
            completion=Coalesce(Sum("completion_tokens"), 0),
            cost=Sum("cost"),
            last=Max("created_at"),
        )
        p50, p90, p99 = latency_percentiles(calls=calls, fractions=(0.5, 0.9, 0.99))
        result.append(
            {
                "run": run,
                "calls": totals["n"],
                "ok": totals["ok"],
                "failed": totals["n"] - totals["ok"],
                "prompt_tokens": totals["prompt"],
                "completion_tokens": totals["completion"],
                "cost": totals["cost"] or Decimal(0),
                "p50": p50,
                "p90": p90,
                "p99": p99,
                "last_call": totals["last"],
            }
        )
    return result


# ---------------------------------------------------------------------------------------------
# The dashboard


DASHBOARD_CACHE_SECONDS = 20


def project_dashboard(*, project: Project) -> dict:
    """Everything the dashboard shows. The counts are live on every poll; agreement, people
    and LLM usage scan whole tables, so they are recomputed at most every
    DASHBOARD_CACHE_SECONDS per project."""
    key = f"releases:dashboard:{project.pk}"
    slow = cache.get(key)
    if slow is None:
        slow = {
            "agreement": project_agreement(project=project),
            "throughput": reviewer_throughput(project=project),
            "llm": llm_usage_by_run(project=project),
            "computed_at": timezone.now(),
        }
        cache.set(key, slow, DASHBOARD_CACHE_SECONDS)
    return {
        "funnel": project_funnel(project=project),
        "distributions": item_distributions(project=project),
        "rubric": rubric_distributions(project=project),
        **slow,
    }
