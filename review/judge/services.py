"""The machine judge on the human side: settings, the calibration of each judge, the rule that
keeps its opinion from anchoring a person, feedback on its rationales, and its uses (queue
order by risk, a second first-pass reviewer), each only where it has been shown to agree.

A *judge* is an LLM profile with one prompt version: changing either makes a new judge with
its own calibration. The judge a project's routing follows is the one whose scores are newest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from generation.public import JUDGE_DIMENSIONS, JudgeScore
from medcot.models import Item, Project
from medcot.roles import ADMIN, EXPERT, require_role
from review.judge.calibration import Calibration, calibrate
from review.models import (
    FirstPassReview,
    FirstPassState,
    JudgeFeedback,
    JudgeSettings,
    PanelDecision,
    RubricDimension,
    RubricScore,
)
from review.services.common import ReviewError, actor_or_none

# -- settings ---------------------------------------------------------------------------------


def judge_settings_get(*, project: Project) -> JudgeSettings:
    """The project's settings, or the defaults (unsaved) when an admin never set them."""
    found = JudgeSettings.objects.filter(project=project).first()
    return found or JudgeSettings(project=project)


def judge_settings_update(
    *,
    actor,
    project: Project,
    kappa_threshold: float,
    min_items: int,
    order_queues: bool,
    second_review_on_zero: bool,
) -> JudgeSettings:
    require_role(actor, ADMIN)
    if not -1.0 <= kappa_threshold <= 1.0:
        raise ReviewError(_("The threshold is a κ value between -1 and 1."), code="kappa_threshold")
    if min_items < 2:
        raise ReviewError(_("At least two items are needed for an interval."), code="min_items")
    with transaction.atomic():
        settings, _created = JudgeSettings.objects.select_for_update().get_or_create(
            project=project
        )
        settings.kappa_threshold = kappa_threshold
        settings.min_items = min_items
        settings.order_queues = order_queues
        settings.second_review_on_zero = second_review_on_zero
        settings.updated_by = actor_or_none(actor)
        settings.save()
    routing_cache_clear()
    return settings


# -- judges and their calibration -----------------------------------------------------------


@dataclass(frozen=True)
class JudgeKey:
    profile_id: int
    prompt_version_id: int


def judges_of_project(*, project: Project) -> list[dict]:
    """Every judge that scored items of the project: profile, model, prompt, items, newest."""
    rows = (
        JudgeScore.objects.filter(item__project=project)
        .values(
            "profile_id",
            "profile__name",
            "prompt_version_id",
            "prompt_version__language",
            "prompt_version__number",
        )
        .annotate(n=Count("id"), newest=Max("id"), model=Max("model"))
        .order_by("-newest")
    )
    return [
        {
            "key": JudgeKey(r["profile_id"], r["prompt_version_id"]),
            "profile": r["profile__name"],
            "model": r["model"],
            "prompt": f"judge/{r['prompt_version__language']} v{r['prompt_version__number']}",
            "n": r["n"],
        }
        for r in rows
    ]


def judge_active(*, project: Project) -> JudgeKey | None:
    judges = judges_of_project(project=project)
    return judges[0]["key"] if judges else None


def calibration_for(*, project: Project, judge: JudgeKey) -> Calibration:
    settings = judge_settings_get(project=project)
    scores = JudgeScore.objects.filter(
        item__project=project,
        profile_id=judge.profile_id,
        prompt_version_id=judge.prompt_version_id,
    ).order_by("id")
    # Plain tuples, not model instances: a project's judge may have scored tens of thousands
    # of versions, and this runs for the calibration page and (cached) for queue routing.
    by_version = {
        row[0]: {
            "scores": dict(zip(JUDGE_DIMENSIONS, row[1:6], strict=True)),
            "first_wrong_step": row[6],
        }
        for row in scores.values_list("version_id", *JUDGE_DIMENSIONS, "first_wrong_step")
    }
    versions = list(by_version)
    experts: dict[int, dict[str, list[int]]] = {}
    for version_id, dimension, score in RubricScore.objects.filter(
        version_id__in=versions
    ).values_list("version_id", "dimension", "score"):
        experts.setdefault(version_id, {}).setdefault(dimension, []).append(score)
    first_pass = [
        (
            r.version_id,
            {
                "correctness": int(r.correctness),
                "sufficiency": int(r.sufficiency),
                "overall": r.score,
            },
        )
        for r in FirstPassReview.objects.filter(version_id__in=versions).exclude(
            state=FirstPassState.UNDONE
        )
    ]
    steps = list(
        PanelDecision.objects.filter(version_id__in=versions).values_list(
            "version_id", "first_wrong_step"
        )
    )
    result = calibrate(
        judge=by_version,
        experts=experts,
        first_pass=first_pass,
        expert_steps=steps,
        dimensions=JUDGE_DIMENSIONS,
        threshold=settings.kappa_threshold,
        min_items=settings.min_items,
    )
    feedback = JudgeFeedback.objects.filter(judge_score__in=scores).values_list("verdict")
    result.feedback = dict(feedback.annotate(n=Count("id")).values_list("verdict", "n"))
    return result


def trusted_dimensions(*, project: Project) -> tuple[JudgeKey | None, set[str]]:
    judge = judge_active(project=project)
    if judge is None:
        return None, set()
    return judge, calibration_for(project=project, judge=judge).trusted


# -- no anchoring: who may see the judge's opinion of an item, and when ------------------------


def judge_visible_to(*, user, item: Item) -> bool:
    """The judge's opinion of an item is shown to a person only after they gave their own
    verdict on it: a first-pass review (not undone) or a panel decision. Everyone else, and
    everyone before that moment, sees nothing of it."""
    if user is None or not user.is_authenticated:
        return False
    if _final_first_pass(user).filter(item=item).exists():
        return True
    return PanelDecision.objects.filter(item=item, expert=user).exists()


def _final_first_pass(user):
    """The person's first-pass verdicts that can no longer be undone: a verdict still in its
    undo window does not count, or a reviewer could read the judge, undo and answer again."""
    return FirstPassReview.objects.filter(reviewer=user).filter(
        Q(state=FirstPassState.APPLIED)
        | Q(state=FirstPassState.HELD, effective_at__lte=timezone.now())
    )


def first_pass_last_with_opinion(*, user) -> Item | None:
    """The item of the person's latest final first-pass verdict, when the judge scored the
    version they reviewed: the first-pass screen offers its second opinion."""
    for review in _final_first_pass(user).select_related("item").order_by("-id")[:1]:
        if JudgeScore.objects.filter(item_id=review.item_id, version_id=review.version_id).exists():
            return review.item
    return None


def _own_scores(user, item: Item) -> tuple[int | None, dict[str, int]]:
    """The version the person last gave a verdict on, and their rubric scores on it (experts)."""
    decision = PanelDecision.objects.filter(item=item, expert=user).order_by("-round").first()
    if decision is not None:
        rows = RubricScore.objects.filter(item=item, expert=user, round=decision.round)
        return decision.version_id, dict(rows.values_list("dimension", "score"))
    review = _final_first_pass(user).filter(item=item).order_by("-id").first()
    if review is None:
        return None, {}
    # A first-pass verdict is binary; it is compared on the two dimensions it shares.
    return review.version_id, {
        "medical_correctness": 2 if review.correctness else 0,
        "information_sufficiency": 2 if review.sufficiency else 0,
    }


@dataclass
class SecondOpinion:
    score: JudgeScore
    rows: list[dict]
    binary: bool
    feedback: dict[str, str]


def second_opinion_for(*, user, item: Item) -> SecondOpinion | None:
    """The judge's scores on the version the person judged, beside their own, with the
    dimensions where they differ marked; None before the person's verdict or without scores."""
    if not judge_visible_to(user=user, item=item):
        return None
    version_id, own = _own_scores(user, item)
    score = (
        JudgeScore.objects.filter(item=item, version_id=version_id)
        .select_related("profile", "prompt_version")
        .order_by("-id")
        .first()
    )
    if score is None:
        return None
    binary = not PanelDecision.objects.filter(item=item, expert=user).exists()
    rows = []
    for dimension in RubricDimension:
        judged = getattr(score, dimension.value)
        mine = own.get(dimension.value)
        if binary and mine is not None:
            differs = (judged >= 1) != (mine >= 1)
        else:
            differs = mine is not None and mine != judged
        rows.append(
            {
                "dimension": dimension.value,
                "label": dimension.label,
                "judge": judged,
                "mine": (None if mine is None else (int(mine >= 1) if binary else mine)),
                "differs": differs,
                "rationale": score.rationales.get(dimension.value, ""),
            }
        )
    feedback = dict(
        JudgeFeedback.objects.filter(judge_score=score, expert=user).values_list(
            "dimension", "verdict"
        )
    )
    return SecondOpinion(score=score, rows=rows, binary=binary, feedback=feedback)


def judge_opinion_payload(opinion: SecondOpinion) -> dict:
    score = opinion.score
    return {
        "judge_score": score.pk,
        "model": score.model,
        "profile": score.profile.name,
        "prompt_version": score.prompt_version.label,
        "machine_scores": True,
        "first_wrong_step": score.first_wrong_step,
        "answer": score.answer,
        "dimensions": [
            {k: row[k] for k in ("dimension", "judge", "mine", "differs", "rationale")}
            | {"feedback": opinion.feedback.get(row["dimension"])}
            for row in opinion.rows
        ],
    }


def judge_feedback_record(
    *, actor, judge_score: JudgeScore, dimension: str, verdict: str
) -> JudgeFeedback:
    """An expert marks the judge's rationale on one dimension helpful or wrong, once they have
    given their own verdict on the item. A second mark on the same dimension is refused."""
    require_role(actor, EXPERT)
    if dimension not in RubricDimension.values:
        raise ReviewError(_("Unknown rubric dimension."), code="dimension")
    if verdict not in JudgeFeedback.Verdict.values:
        raise ReviewError(_("Mark the rationale helpful or wrong."), code="verdict")
    if not judge_visible_to(user=actor, item=judge_score.item):
        # The same answer as for a score that does not exist: nothing of the judge leaks.
        raise ReviewError(_("Give your own verdict on this item first."), code="not_yet")
    with transaction.atomic():
        feedback, created = JudgeFeedback.objects.get_or_create(
            judge_score=judge_score,
            expert=actor,
            dimension=dimension,
            defaults={"verdict": verdict},
        )
    if not created and feedback.verdict != verdict:
        raise ReviewError(_("You already marked this rationale."), code="duplicate")
    return feedback


# -- uses, each only where trusted ------------------------------------------------------------


@dataclass(frozen=True)
class Routing:
    """What the judge may do in a project right now, and why."""

    judge: JudgeKey | None
    trusted: frozenset[str]
    order_queues: bool
    second_review_on_zero: bool


# The routing of a project is read on every queue claim; the calibration behind it costs a few
# queries over every judged item, so it is kept per process for a few seconds.
ROUTING_SECONDS = 15.0
_routing_cache: dict[int, tuple[float, Routing]] = {}


def routing_cache_clear() -> None:
    _routing_cache.clear()


def judge_routing(*, project: Project) -> Routing:
    now = time.monotonic()
    hit = _routing_cache.get(project.pk)
    if hit is not None and now - hit[0] < ROUTING_SECONDS:
        return hit[1]
    routing = _judge_routing(project)
    _routing_cache[project.pk] = (now, routing)
    return routing


def _judge_routing(project: Project) -> Routing:
    settings = judge_settings_get(project=project)
    if not (settings.order_queues or settings.second_review_on_zero):
        return Routing(None, frozenset(), False, False)
    judge, trusted = trusted_dimensions(project=project)
    return Routing(
        judge=judge,
        trusted=frozenset(trusted),
        order_queues=settings.order_queues and bool(trusted),
        second_review_on_zero=settings.second_review_on_zero and "medical_correctness" in trusted,
    )


def risk_order_sql(*, project_id: int | None) -> tuple[str, list]:
    """An ORDER BY term for the first-pass claim query (alias `i` for the item) that puts the
    items the active judge scored worst on its trusted dimensions first, or ("", []) when the
    project does not use it. Items the judge has not scored come after, in arrival order."""
    if project_id is None:
        return "", []
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return "", []
    routing = judge_routing(project=project)
    if not routing.order_queues or routing.judge is None:
        return "", []
    table = JudgeScore._meta.db_table
    risk = " + ".join(f"(2 - j.{d})" for d in sorted(routing.trusted))
    term = (
        f"(SELECT {risk} FROM {table} j WHERE j.version_id = i.current_version_id "  # noqa: S608
        "AND j.profile_id = %s AND j.prompt_version_id = %s ORDER BY j.id DESC LIMIT 1) "
        "DESC NULLS LAST, "
    )
    return term, [routing.judge.profile_id, routing.judge.prompt_version_id]


def risk_of_items(*, item_ids: list[int]) -> dict[int, int]:
    """Judge risk of each item (on its project's trusted dimensions) for projects that order
    their panel queues by it; items of other projects are absent."""
    risks: dict[int, int] = {}
    items = Item.objects.filter(pk__in=item_ids).values_list("pk", "project_id", "current_version")
    by_project: dict[int, list[tuple[int, int]]] = {}
    for pk, project_id, version_id in items:
        by_project.setdefault(project_id, []).append((pk, version_id))
    for project_id, rows in by_project.items():
        routing = judge_routing(project=Project(pk=project_id))
        if not routing.order_queues or routing.judge is None:
            continue
        scores = JudgeScore.objects.filter(
            version_id__in=[v for _, v in rows],
            profile_id=routing.judge.profile_id,
            prompt_version_id=routing.judge.prompt_version_id,
        )
        by_version = {s.version_id: s for s in scores}
        for pk, version_id in rows:
            score = by_version.get(version_id)
            if score is not None:
                risks[pk] = sum(2 - getattr(score, d) for d in routing.trusted)
    return risks


def second_review_required(*, item: Item) -> bool:
    """True when the project requires a second first-pass reviewer for this item: the setting
    is on, medical correctness is trusted, and the active judge scored the current version 0
    on it. A flag for the first-pass workflow's double review to read."""
    routing = judge_routing(project=item.project)
    if not routing.second_review_on_zero or routing.judge is None:
        return False
    return JudgeScore.objects.filter(
        version_id=item.current_version_id,
        profile_id=routing.judge.profile_id,
        prompt_version_id=routing.judge.prompt_version_id,
        medical_correctness=0,
    ).exists()
