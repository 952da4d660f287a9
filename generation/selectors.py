"""Reads on the generation side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from django.db import connections
from django.db.models import (
    Aggregate,
    Count,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from generation.models import (
    UNUSABLE_PREFIX,
    Job,
    LLMCall,
    LLMProfile,
    PromptVersion,
    ReanswerAttempt,
    Run,
)
from medcot.lifecycle import Status
from medcot.models import Item, Project
from medcot.permissions import project_get_for_admin


def run_get_for_admin(*, user, slug: str, pk: int) -> Run:
    """A project's run, for its page and its API resource alike: 403 for anyone but an admin,
    404 for no such project or run (the order of `medcot.permissions`)."""
    project = project_get_for_admin(user=user, slug=slug)
    run = Run.objects.select_related("project", "profile", "created_by").filter(
        project=project, pk=pk
    )
    found = run.first()
    if found is None:
        raise Http404("No such run")
    return found


def reanswer_attempts_for_item(*, item: Item) -> list[ReanswerAttempt]:
    """Every re-answer attempt on the item, first to last."""
    return list(
        ReanswerAttempt.objects.filter(item=item).select_related("llm_call").order_by("number")
    )


def runs_for_project(*, project: Project, limit: int = 50) -> QuerySet[Run]:
    return (
        Run.objects.filter(project=project)
        .select_related("profile", "created_by")
        .annotate(
            jobs_total=Count("jobs"),
            jobs_finished=Count(
                "jobs", filter=Q(jobs__state__in=[Job.State.DONE, Job.State.CANCELLED])
            ),
            jobs_error=Count("jobs", filter=Q(jobs__state=Job.State.ERROR)),
            jobs_active=Count(
                "jobs", filter=Q(jobs__state__in=[Job.State.QUEUED, Job.State.RUNNING])
            ),
        )
        .order_by("-created_at", "-id")[:limit]
    )


@dataclass
class StageProgress:
    kind: str
    label: str
    total: int
    queued: int
    running: int
    done: int
    error: int
    cancelled: int

    @property
    def finished(self) -> int:
        return self.done + self.error + self.cancelled

    @property
    def percent(self) -> int:
        return int(100 * self.finished / self.total) if self.total else 100

    @property
    def breakdown(self) -> list[tuple[str, int]]:
        """The job counts that are not zero, by state, in the order jobs move through them."""
        counts = [
            ("running", self.running),
            ("queued", self.queued),
            ("done", self.done),
            ("error", self.error),
            ("cancelled", self.cancelled),
        ]
        return [(state, n) for state, n in counts if n]


def run_progress(*, run: Run) -> list[StageProgress]:
    rows = Job.objects.filter(run=run).values("kind", "state").annotate(n=Count("id"))
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        table.setdefault(row["kind"], {})[row["state"]] = row["n"]
    stages = []
    for kind, label in Job.Kind.choices:
        counts = table.get(kind)
        if not counts:
            continue
        stages.append(
            StageProgress(
                kind=kind,
                label=str(label),
                total=sum(counts.values()),
                **{state: counts.get(state, 0) for state in Job.State.values},
            )
        )
    return stages


def run_totals(*, run: Run, stages: list[StageProgress] | None = None) -> StageProgress:
    """All stages added up; pass the stages when they are at hand to save the query."""
    if stages is None:
        stages = run_progress(run=run)
    return StageProgress(
        kind="all",
        label="",
        total=sum(s.total for s in stages),
        queued=sum(s.queued for s in stages),
        running=sum(s.running for s in stages),
        done=sum(s.done for s in stages),
        error=sum(s.error for s in stages),
        cancelled=sum(s.cancelled for s in stages),
    )


@dataclass
class StatusCount:
    status: str
    label: str
    count: int


def run_item_statuses(*, run: Run) -> list[StatusCount]:
    """Where the items this run worked on are now, in lifecycle order: every item with a job
    in the run, and the questions its expansion jobs wrote (they have no job of their own
    until the reviewers pass them on)."""
    jobs = Job.objects.filter(run=run)
    items = Item.objects.filter(
        Q(pk__in=jobs.values("item_id"))
        | Q(family_id__in=jobs.filter(kind=Job.Kind.EXPAND).values("item_id"))
    )
    counts = dict(items.order_by().values_list("status").annotate(n=Count("id")))
    return [
        StatusCount(status=value, label=str(label), count=counts[value])
        for value, label in Status.choices
        if counts.get(value)
    ]


# The run page's latency figures, as fractions of the successful calls.
LATENCY_FRACTIONS = (0.5, 0.9, 0.99)


class PercentileDisc(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_disc(f) WITHIN GROUP (ORDER BY x)`: the
    nearest-rank percentile, an actual value of x."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)r) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = IntegerField()

    def __init__(self, expression, *, fraction: float, **extra):
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a percentile fraction is between 0 and 1, not {fraction}")
        # A float's repr reads back as the same double, so the database ranks with the very
        # fraction `nearest_rank` uses.
        super().__init__(expression, fraction=fraction, **extra)


def nearest_rank(count: int, fraction: float) -> int:
    """The 1-based rank percentile_disc picks among `count` sorted values: the first whose
    cumulative share reaches `fraction` (the same double arithmetic as PostgreSQL's)."""
    return min(count, max(1, math.ceil(fraction * count)))


def latency_percentiles(
    *, calls: QuerySet[LLMCall], fractions: tuple[float, ...] = LATENCY_FRACTIONS
) -> list[int | None]:
    """Nearest-rank latency percentiles of the successful calls among `calls`, worked out in
    the database (None when there are none). A run has ~100,000 calls and the run page polls
    every second, so the latencies never come into Python."""
    ok = calls.filter(outcome=LLMCall.Outcome.OK)
    if connections[ok.db].vendor == "postgresql":
        # One sort serves all three: PostgreSQL shares the state of ordered-set aggregates
        # over the same input.
        names = [f"p{i}" for i in range(len(fractions))]
        row = ok.aggregate(
            **{
                name: PercentileDisc("latency_ms", fraction=fraction)
                for name, fraction in zip(names, fractions, strict=True)
            }
        )
        return [row[name] for name in names]
    return latency_percentiles_by_offset(calls=ok, fractions=fractions)


def latency_percentiles_by_offset(
    *, calls: QuerySet[LLMCall], fractions: tuple[float, ...] = LATENCY_FRACTIONS
) -> list[int | None]:
    """The portable path (SQLite): count, then fetch the value at each nearest rank with an
    ORDER BY … LIMIT 1 OFFSET. Same numbers as `percentile_disc`, one row per query."""
    count = calls.count()
    if not count:
        return [None] * len(fractions)
    ordered = calls.order_by("latency_ms").values_list("latency_ms", flat=True)
    values = []
    for fraction in fractions:
        rank = nearest_rank(count, fraction)
        # A slice, not an index: the count is a query earlier, and a row gone since (a run
        # deleted meanwhile) must not raise here.
        values.append(next(iter(ordered[rank - 1 : rank]), None))
    return values


@dataclass
class RunStats:
    calls: int
    ok: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    p50_ms: int | None
    p90_ms: int | None
    p99_ms: int | None
    calls_per_second: float | None


def run_stats(*, run: Run) -> RunStats:
    """The run page's figures. Latency percentiles are by nearest rank over successful calls."""
    calls = LLMCall.objects.filter(run=run)
    agg = calls.aggregate(
        n=Count("id"),
        ok=Count("id", filter=Q(outcome=LLMCall.Outcome.OK)),
        pt=Sum("prompt_tokens"),
        ct=Sum("completion_tokens"),
        cost=Sum("cost"),
        first=Min("created_at"),
        last=Max("created_at"),
    )
    p50, p90, p99 = latency_percentiles(calls=calls) if agg["ok"] else (None, None, None)
    rate = None
    if agg["n"] and agg["first"] and agg["last"] and agg["last"] > agg["first"]:
        rate = agg["n"] / (agg["last"] - agg["first"]).total_seconds()
    return RunStats(
        calls=agg["n"],
        ok=agg["ok"],
        failed=agg["n"] - agg["ok"],
        prompt_tokens=agg["pt"] or 0,
        completion_tokens=agg["ct"] or 0,
        cost=agg["cost"] or Decimal(0),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        calls_per_second=rate,
    )


def run_failed_jobs(*, run: Run, limit: int = 100) -> QuerySet[Job]:
    return (
        Job.objects.filter(run=run, state=Job.State.ERROR)
        .select_related("item")
        .order_by("-updated_at")[:limit]
    )


def profiles_list() -> QuerySet[LLMProfile]:
    return LLMProfile.objects.annotate(call_count=Count("calls")).order_by("-is_default", "name")


def prompt_versions_current() -> list[PromptVersion]:
    """The newest version of every prompt that has been used or edited."""
    newest: dict[tuple[str, str, str], PromptVersion] = {}
    for version in PromptVersion.objects.order_by("task", "variant", "language", "-number"):
        newest.setdefault((version.task, version.variant, version.language), version)
    return list(newest.values())


# -- what each stage produced against what was expected -----------------------------------


@dataclass
class StageYield:
    """What a stage made of its finished jobs, against what they should have made.

    `expected` and `produced` count over finished jobs only, so a stage at work is not called
    short; `short` is set when the produced share is under the run's minimum."""

    kind: str
    label: str
    jobs: int
    finished: int
    unit: str  # "questions", "CoTs", "items"
    expected: int
    produced: int
    unusable_replies: int
    reason: str
    short: bool

    @property
    def share(self) -> float | None:
        return self.produced / self.expected if self.expected else None

    @property
    def percent(self) -> int | None:
        share = self.share
        return None if share is None else round(100 * share)


def min_yield() -> float:
    from django.conf import settings

    return float(getattr(settings, "MEDCOT_RUN_MIN_YIELD", 0.5))


def _unusable_calls(run: Run, task: str) -> QuerySet[LLMCall]:
    return LLMCall.objects.filter(
        run=run, task=task, outcome=LLMCall.Outcome.OK, error__startswith=UNUSABLE_PREFIX
    )


def run_unusable_replies(*, run: Run, task: str = "synthesize", limit: int = 20) -> list[LLMCall]:
    """Examples of replies that held nothing usable, newest first."""
    return list(_unusable_calls(run, task).select_related("item").order_by("-id")[:limit])


def run_yields(
    *, run: Run, stages: list[StageProgress] | None = None, threshold: float | None = None
) -> list[StageYield]:
    """Per stage, what its finished jobs produced against what they should have: CoTs for
    the CoT stage, synthetic questions for expansion (expansion factor − 1 per seed), items
    concluded (consensus or panel) for re-answering."""
    if stages is None:
        stages = run_progress(run=run)
    if threshold is None:
        threshold = min_yield()
    project = run.project
    yields = []
    for stage in stages:
        finished = stage.done + stage.error
        unusable = 0
        reason = ""
        if stage.kind == Job.Kind.EXPAND:
            per_seed = max(0, project.expansion_factor - 1)
            done_seeds = Job.objects.filter(run=run, kind=Job.Kind.EXPAND, state=Job.State.DONE)
            produced = Item.objects.filter(
                family_id__in=done_seeds.values("item_id"), kind="synthetic"
            ).count()
            expected = finished * per_seed
            unit = "questions"
            unusable = _unusable_calls(run, "synthesize").count()
            if unusable:
                last = _unusable_calls(run, "synthesize").order_by("-id").first()
                reason = last.error.removeprefix(UNUSABLE_PREFIX)[:300] if last else ""
        elif stage.kind == Job.Kind.REANSWER:
            produced, expected, unit = stage.done, finished, "items"
            unusable = ReanswerAttempt.objects.filter(run=run, parsed=False).count()
        elif stage.kind == Job.Kind.COT:
            produced, expected, unit = stage.done, finished, "CoTs"
        else:
            produced, expected, unit = stage.done, finished, "items"
        if stage.error and not reason:
            last_error = (
                Job.objects.filter(run=run, kind=stage.kind, state=Job.State.ERROR)
                .order_by("-updated_at")
                .values_list("error", flat=True)
                .first()
            )
            reason = (last_error or "")[:300]
        yields.append(
            StageYield(
                kind=stage.kind,
                label=stage.label,
                jobs=stage.total,
                finished=finished,
                unit=unit,
                expected=expected,
                produced=produced,
                unusable_replies=unusable,
                reason=reason,
                short=bool(expected) and produced < threshold * expected,
            )
        )
    return yields


@dataclass
class AttemptStep:
    attempt: int
    items: int


def run_reanswer_steps(*, run: Run) -> list[AttemptStep]:
    """Items this run is re-answering now, by the attempt they are on (attempts so far + 1)."""
    attempts = (
        ReanswerAttempt.objects.filter(item=OuterRef("item_id"))
        .order_by()
        .values("item")
        .annotate(c=Count("id"))
        .values("c")
    )
    counts = (
        Job.objects.filter(
            run=run, kind=Job.Kind.REANSWER, state__in=[Job.State.QUEUED, Job.State.RUNNING]
        )
        .annotate(done=Coalesce(Subquery(attempts, output_field=IntegerField()), 0))
        .order_by()
        .values_list("done")
        .annotate(n=Count("id"))
    )
    return [AttemptStep(attempt=done + 1, items=n) for done, n in sorted(counts)]


# How far back the finishing rate of jobs is measured for the ETA.
ETA_WINDOW_SECONDS = 60


def run_eta_seconds(*, run: Run, remaining: int) -> float | None:
    """Seconds until the run's remaining jobs are done at the rate jobs finished over the last
    minute (None when nothing finished in that time, or nothing remains)."""
    from datetime import timedelta

    from django.utils import timezone

    if not remaining or run.state != Run.State.RUNNING:
        return None
    since = timezone.now() - timedelta(seconds=ETA_WINDOW_SECONDS)
    recent = Job.objects.filter(
        run=run, state__in=[Job.State.DONE, Job.State.ERROR], updated_at__gte=since
    )
    finished = recent.count()
    if not finished:
        return None
    span = min(ETA_WINDOW_SECONDS, max(1.0, (timezone.now() - run.created_at).total_seconds()))
    rate = finished / span
    return remaining / rate if rate else None
