"""Double review: a share of first-pass items gets a second, independent first-pass verdict.

The draw is made when the first verdict takes effect, from a keyed hash of the item id (so it is
the same however often it is asked, and nobody can tell in advance which items are drawn), at
the project's `double_review_percent`, and for every verdict of a reviewer whose reliability
alert has a second opinion asked. The first verdict is kept, the item stays in the first-pass
queue, and the queue hands it to someone else (its probe skips items the caller reviewed). When
the second verdict takes effect the two are compared: if they agree, the second takes effect as
usual; if they disagree, the item goes on to the experts (re-answering, then consensus, where
two experts judge it) rather than being discarded on one person's word.

A first verdict that fixes the item is not drawn: the content changed, so there is nothing for
a second person to judge independently.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from medcot.lifecycle import Status, transition
from medcot.models import Event, Item
from review.judge.services import second_review_required
from review.models import FirstPassOutcome, FirstPassReview, FirstPassState, Lease, Stage
from review.quality.models import DoubleReview, ReliabilityAlert
from review.reports.agreement import Statistic, cohen_kappa


def double_review_drawn(*, item: Item, reviewer_id: int) -> str | None:
    """Why the item gets a second verdict ("sample", "second_opinion"), or None."""
    if ReliabilityAlert.objects.filter(
        project_id=item.project_id,
        reviewer_id=reviewer_id,
        closed_at__isnull=True,
        second_opinion_at__isnull=False,
    ).exists():
        return DoubleReview.Why.SECOND_OPINION
    # Only when the project switched it on and the judge's medical correctness is trusted.
    if second_review_required(item=item):
        return DoubleReview.Why.JUDGE
    percent = item.project.double_review_percent
    if percent <= 0:
        return None
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"double-review:{item.pk}".encode(), hashlib.sha256
    ).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return DoubleReview.Why.SAMPLE if draw < percent / 100 else None


def double_review_open_for(*, item: Item, reviewer) -> bool:
    """Whether `reviewer` may give the second verdict the item is waiting for."""
    return (
        DoubleReview.objects.filter(item=item, state=DoubleReview.State.WAITING)
        .exclude(first__reviewer=reviewer)
        .exists()
    )


def _first_verdict_take(*, review: FirstPassReview, item, now) -> bool:
    """The first verdict of an item not yet drawn: if the item is drawn now, keep the verdict
    and leave the item in the queue for a second; True if drawn."""
    if DoubleReview.objects.filter(item=item).exists():
        return False
    if review.outcome == FirstPassOutcome.FIXED:
        return False
    why = double_review_drawn(item=item, reviewer_id=review.reviewer_id)
    if why is None:
        return False
    DoubleReview.objects.create(item=item, version_id=review.version_id, first=review, why=why)
    FirstPassReview.objects.filter(pk=review.pk).update(
        state=FirstPassState.APPLIED, applied_at=now
    )
    Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW).delete()
    Event.objects.create(
        project_id=item.project_id,
        item=item,
        actor=None,
        kind="double_review_drawn",
        data={"first_pass_review": review.pk, "why": why},
    )
    return True


def double_review_take(*, review: FirstPassReview, item: Item) -> bool:
    """Called by first_pass_apply with the item locked, before a verdict takes effect. Returns
    True when it has dealt with the verdict itself: the first verdict of a drawn item (kept, the
    item stays in the queue), or a second verdict that disagrees with the first and would
    discard the item (sent to the experts instead)."""
    waiting = DoubleReview.objects.filter(item=item, state=DoubleReview.State.WAITING).first()
    now = timezone.now()
    if waiting is None:
        return _first_verdict_take(review=review, item=item, now=now)
    if waiting.first.reviewer_id == review.reviewer_id:
        return False
    agree = waiting.first.score == review.score
    DoubleReview.objects.filter(pk=waiting.pk).update(
        second=review,
        state=DoubleReview.State.AGREED if agree else DoubleReview.State.DISAGREED,
        settled_at=now,
    )
    if agree or review.outcome != FirstPassOutcome.DISCARDED:
        # Agreement, or a disagreement whose second verdict passes or fixes the item: either
        # way it goes on as that verdict says, to re-answering and the experts.
        return False
    from review.services.common import reanswer_start

    transition(
        item,
        Status.REANSWERING,
        actor=review.reviewer,
        data={"first_pass_review": review.pk, "double_review": waiting.pk},
    )
    Event.objects.create(
        project_id=item.project_id,
        item=item,
        actor=None,
        kind="double_review_disagreed",
        reason=_("The two first-pass verdicts disagree: the experts decide."),
        data={"first": waiting.first_id, "second": review.pk},
    )
    FirstPassReview.objects.filter(pk=review.pk).update(
        state=FirstPassState.APPLIED, applied_at=now
    )
    Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW).delete()
    reanswer_start(item_ids=[item.pk])
    return True


def first_pass_kappa(*, project_id: int) -> Statistic:
    """Cohen's κ between the two first-pass verdicts (all three criteria 1 or not) of the
    double-reviewed items, with its interval."""
    pairs = [
        (first.score, second.score)
        for first, second in (
            (d.first, d.second)
            for d in DoubleReview.objects.filter(
                item__project_id=project_id, second__isnull=False
            ).select_related("first", "second")
        )
    ]
    if not pairs:
        return Statistic(value=None, n_items=0)
    return cohen_kappa(pairs, categories=(0, 1))
