"""Approved items with the review history a release reads: a first-pass review, re-answer
attempts, optionally an expert panel with rubric scores, and consensus votes."""

import pytest
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import Event, Item, RevisionStatus
from review.models import (
    ConsensusVote,
    FirstPassReview,
    FirstPassState,
    Panel,
    PanelDecision,
    RubricDimension,
    RubricScore,
)
from tests.factories import ItemFactory

DIMENSIONS = list(RubricDimension.values)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    # The user fixtures hash a password each; a fast hasher keeps these tests cheap on a
    # shared machine (no test here is about passwords).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def reviewed_item(
    *,
    project,
    reviewer,
    experts,
    status=Status.APPROVED,
    specialty="Cardiology",
    language="en",
    cognitive_level="recall",
    difficulty="easy",
    modified=False,
    attempts=1,
    panel_scores=None,
    agreeing=2,
    cot="A is right because the ECG shows ST elevation; B, C and D delay care.",
    external_id=None,
):
    """An item in `status` with its review trail. `panel_scores` maps each expert to a list
    of five scores (one per rubric dimension) and makes the item a five-strike escalation;
    `agreeing` is how many of `experts` vote for the key and the phrasing (the rest vote B)."""
    extra = {"external_id": external_id} if external_id else {}
    item = ItemFactory(
        project=project,
        status=status,
        specialty=specialty,
        language=language,
        cognitive_level=cognitive_level,
        difficulty=difficulty,
        revision_status=RevisionStatus.MODIFIED if modified else RevisionStatus.UNREVISED,
        version__cot=cot,
        **extra,
    )
    version = item.current_version
    now = timezone.now()
    FirstPassReview.objects.create(
        item=item,
        version=version,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        outcome="pass",
        seconds_on_item=40,
        state=FirstPassState.APPLIED,
        effective_at=now,
        applied_at=now,
    )
    from generation.models import ReanswerAttempt

    for number in range(1, attempts + 1):
        correct = number == attempts and not panel_scores
        ReanswerAttempt.objects.create(
            item=item,
            number=number,
            variant="default",
            model="sim",
            option_order="ABCDE",
            raw_answer="A" if correct else "B",
            answer="A" if correct else "B",
            parsed=True,
            correct=correct,
        )
    if panel_scores:
        Event.objects.create(
            project=project, item=item, kind="status", from_status="reanswering", to_status="panel"
        )
        panel = Panel.objects.create(item=item, round_version=version, state="closed")
        for expert, scores in panel_scores.items():
            for dimension, score in zip(DIMENSIONS, scores, strict=True):
                RubricScore.objects.create(
                    item=item,
                    version=version,
                    expert=expert,
                    round=1,
                    dimension=dimension,
                    score=score,
                )
            PanelDecision.objects.create(
                panel=panel,
                item=item,
                version=version,
                expert=expert,
                round=1,
                decision="accept",
                answer="A",
                seconds_on_item=120,
            )
    for i, expert in enumerate(experts):
        ConsensusVote.objects.create(
            item=item,
            version=version,
            expert=expert,
            answer="A" if i < agreeing else "B",
            approve_phrasing=True,
        )
    return Item.objects.get(pk=item.pk)


@pytest.fixture
def make_item(project, reviewer, expert_a, expert_b):
    def make(**kwargs):
        kwargs.setdefault("experts", [expert_a, expert_b])
        return reviewed_item(project=project, reviewer=reviewer, **kwargs)

    return make
