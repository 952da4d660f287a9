"""First-pass review: three binary criteria per item, with a fix or a discard for any 0.

A submission is held for a short undo window (`REVIEW_UNDO_SECONDS`) and then takes effect:
the fix becomes a new content version, the item moves on, and re-answering starts. Holding it
back keeps the lifecycle one-way (nothing has to move an item back out of `reanswering` or
`discarded` to undo it), at the price of a delay the reviewer never waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from medcot.lifecycle import StaleStatus, Status, transition
from medcot.models import OPTION_LABELS, AuthorKind, Event, Item, ItemVersion
from medcot.roles import EXPERT, REVIEWER, has_role
from medcot.services import item_version_create
from review.models import (
    ConsensusVote,
    FirstPassOutcome,
    FirstPassReview,
    FirstPassState,
    Lease,
    Stage,
)
from review.quality.controls import (
    control_answered,
    control_first_pass_take,
    control_last_answered_at,
)
from review.quality.double import double_review_open_for, double_review_take
from review.selectors import cot_concluded, item_get_for_reviewer
from review.services.common import ReviewError, reanswer_start, undo_seconds
from review.services.queue import lease_held_by_other, lease_release, queue_check_role


@dataclass(frozen=True)
class ContentFix:
    """An inline edit of the item: only the fields given change."""

    stem: str
    options: dict[str, str]
    answer: str
    cot: str


def content_check(*, stem: str, options: dict[str, str], answer: str) -> tuple[str, dict]:
    """Check item content against what `ItemVersion`'s constraints will accept, so a bad edit
    is refused with a message instead of reaching the database as an IntegrityError: a stem,
    options A to D (E optional), and a key that names a given option. Returns the stem and all
    five options, stripped ("" for an absent E)."""
    if not isinstance(stem, str) or not stem.strip():
        raise ReviewError(_("The question stem cannot be empty."))
    if not isinstance(options, dict):
        raise ReviewError(_("Give the options as a mapping from A to E to their text."))
    unknown = sorted(str(label) for label in set(options) - set(OPTION_LABELS))
    if unknown:
        raise ReviewError(
            _("There is no option %(labels)s: options are A to E.") % {"labels": ", ".join(unknown)}
        )
    if any(text is not None and not isinstance(text, str) for text in options.values()):
        raise ReviewError(_("Every option must be text."))
    cleaned = {label: (options.get(label) or "").strip() for label in OPTION_LABELS}
    empty = [label for label in "ABCD" if not cleaned[label]]
    if empty:
        raise ReviewError(
            _("Options A to D are required; %(labels)s is empty.") % {"labels": ", ".join(empty)}
        )
    if answer not in OPTION_LABELS or not cleaned[answer]:
        raise ReviewError(_("The key must name one of the options."))
    return stem.strip(), cleaned


def content_fix_check(*, fix: ContentFix, current: ItemVersion) -> dict:
    """Validate an edit and return it as the JSON kept on the review until it takes effect."""
    stem, options = content_check(stem=fix.stem, options=fix.options, answer=fix.answer)
    data = {"stem": stem, "options": options, "answer": fix.answer, "cot": fix.cot.strip()}
    unchanged = (
        stem == current.stem.strip()
        and options == {label: current.options.get(label, "").strip() for label in OPTION_LABELS}
        and fix.answer == current.answer
        and data["cot"] == current.cot.strip()
    )
    if unchanged:
        raise ReviewError(_("The fix changes nothing. Edit the item, or discard it instead."))
    return data


def first_pass_confirmations_check(
    *,
    concluded: str,
    key: str,
    seconds: int,
    minimum: int,
    confirm_mismatch: bool,
    confirm_fast: bool,
) -> list[str]:
    """The confirmations a pass needs, checked: raises a ReviewError (code `confirm_mismatch`
    or `confirm_fast`) for the first one missing, and returns the ones given where they were
    needed, to be kept with the verdict."""
    given = []
    if concluded and concluded != key:
        if not confirm_mismatch:
            raise ReviewError(
                _(
                    "The chain of thought concludes on %(concluded)s, not on the key %(key)s. "
                    "Fix the item, or confirm (y) that the key is right and the item passes."
                )
                % {"concluded": concluded, "key": key},
                code="confirm_mismatch",
            )
        given.append("mismatch")
    if seconds < minimum:
        if not confirm_fast:
            raise ReviewError(
                _(
                    "You passed this item after %(seconds)d s; this project asks for at least "
                    "%(minimum)d s. Read it through, or confirm (g) that you have."
                )
                % {"seconds": max(0, seconds), "minimum": minimum},
                code="confirm_fast",
            )
        given.append("fast")
    return given


class AlreadyJudged(ReviewError):
    """The reviewer has a verdict on this item (held or applied): a repeated post, or a skip
    after judging. The browser shows it and moves on (the first post counted); the API answers
    400 with the same words."""


class NotHeld(ReviewError):
    """A skip of an item the reviewer does not hold (never claimed, lease gone, someone
    else's). The API answers 403, as for any item that is not the caller's."""


def _already_judged(*, held: bool) -> AlreadyJudged:
    if held:
        message = _("You have already judged this item; undo the verdict to change it.")
    else:
        message = _("You have already judged this item; your verdict has taken effect.")
    return AlreadyJudged(message, code="already_judged")


def first_pass_item_get(*, user, pk: int) -> Item:
    """The item a reviewer's verdict or skip is about, refused in one order on every path:
    the role (403), a verdict this reviewer already gave (`AlreadyJudged`, even once the
    item has moved on), then the item (404 if not at first pass, 403 if someone else's)."""
    if not has_role(user, REVIEWER, EXPERT):
        raise PermissionDenied
    given = (
        FirstPassReview.objects.filter(item_id=pk, reviewer=user)
        .exclude(state=FirstPassState.UNDONE)
        .values_list("state", flat=True)
        .first()
    )
    if given is not None:
        raise _already_judged(held=given == FirstPassState.HELD)
    if control_answered(item_id=pk, reviewer=user):
        # A control's review row became a control answer: it reads as a verdict taken effect.
        raise _already_judged(held=False)
    return item_get_for_reviewer(user=user, pk=pk)


def first_pass_skip(*, user, pk: int) -> None:
    """Give a first-pass item the reviewer holds back to the queue, unjudged. Refused for a
    judged item (the lease outlives a held verdict; releasing it would not take the verdict
    back) and for one the reviewer does not hold."""
    item = first_pass_item_get(user=user, pk=pk)
    if not lease_release(user=user, item_id=item.pk, stage=Stage.FIRST_REVIEW):
        raise NotHeld(
            _("You do not hold this item; take it from the queue first."), code="not_held"
        )


_OUTCOMES = {
    "pass": FirstPassOutcome.PASS,
    "fix": FirstPassOutcome.FIXED,
    "discard": FirstPassOutcome.DISCARDED,
}


def _verdict_check(*, action: str, all_ones: bool, reason: str) -> str:
    """The verdict's own consistency, before anything is read: returns its outcome."""
    if action not in _OUTCOMES:
        raise ReviewError(_("Choose pass, fix or discard."))
    if action == "pass" and not all_ones:
        raise ReviewError(_("A criterion is 0: fix the item or discard it, with a reason."))
    if action == "discard" and all_ones:
        raise ReviewError(_("Every criterion is 1; set the failing one to 0 to discard."))
    if action in {"fix", "discard"} and not reason:
        raise ReviewError(_("Say why: a fix or a discard needs a reason."))
    return _OUTCOMES[action]


def _item_lock_at_first_pass(item: Item) -> Item:
    """Lock the item row for the verdict's check and write; refused unless at first pass."""
    locked = (
        Item.objects.select_for_update(of=("self",))
        .select_related("current_version", "project")
        .get(pk=item.pk)
    )
    if locked.status != Status.FIRST_REVIEW:
        raise ReviewError(_("This item is no longer waiting for first-pass review."))
    return locked


def _pass_facts(*, item: Item, concluded: str, seconds: int) -> dict:
    """What a pass is checked against (`first_pass_confirmations_check`), from the locked item."""
    return {
        "concluded": concluded,
        "key": item.current_version.answer,
        "seconds": seconds,
        "minimum": item.project.min_pass_seconds,
    }


def _fix_data(*, fix: ContentFix | None, current: ItemVersion) -> dict:
    """The checked fields of a fix verdict's edit."""
    if fix is None:
        raise ReviewError(_("A fix needs the edited item."))
    return content_fix_check(fix=fix, current=current)


def _lease_keep_until_effective(*, review: FirstPassReview) -> None:
    """The lease stays with the reviewer until the submission takes effect, so nobody else is
    handed an item whose verdict may still be undone."""
    Lease.objects.filter(
        item_id=review.item_id, stage=Stage.FIRST_REVIEW, holder=review.reviewer
    ).update(expires_at=review.effective_at + timedelta(minutes=5))


def _seconds_since_claim(*, item: Item, reviewer, now: datetime) -> int:
    """Time on the item when the caller cannot tell: since this reviewer's claim, else 0."""
    lease = Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW, holder=reviewer).first()
    return int((now - lease.claimed_at).total_seconds()) if lease else 0


def _reviewer_turn_check(*, item: Item, reviewer, now: datetime) -> None:
    """Refuse a reviewer who may not judge the (locked) item now: someone else holds it, they
    wrote its version, they judged it already, or it is judged and not open to a second."""
    if lease_held_by_other(user=reviewer, item_id=item.pk, stage=Stage.FIRST_REVIEW, now=now):
        raise ReviewError(_("Someone else is reviewing this item."))
    if item.current_version.author_id == reviewer.pk:
        raise ReviewError(_("You wrote this version; someone else must review it."))
    verdicts = FirstPassReview.objects.filter(item=item).exclude(state=FirstPassState.UNDONE)
    mine = verdicts.filter(reviewer=reviewer).values_list("state", flat=True).first()
    if mine is not None:
        raise _already_judged(held=mine == FirstPassState.HELD)
    if verdicts.exists() and not double_review_open_for(item=item, reviewer=reviewer):
        raise ReviewError(_("This item has already been reviewed."))


def _apply_without_undo_window(review: FirstPassReview) -> FirstPassReview:
    """With no undo window the verdict takes effect at once; returns the review as applied."""
    first_pass_apply(review_id=review.pk)
    # A control's review row is gone once applied (review/quality): it reads as applied.
    applied = FirstPassReview.objects.filter(pk=review.pk).first()
    if applied is None:
        review.state = FirstPassState.APPLIED
    return applied or review


def first_pass_submit(
    *,
    item: Item,
    reviewer,
    relevance: bool,
    correctness: bool,
    sufficiency: bool,
    action: str,
    reason: str = "",
    comment: str = "",
    fix: ContentFix | None = None,
    seconds_on_item: int | None = None,
    confirm_mismatch: bool = False,
    confirm_fast: bool = False,
    now: datetime | None = None,
) -> FirstPassReview:
    """Record a reviewer's verdict. `action` is "pass", "fix" or "discard".

    All three criteria at 1 allow a pass (or a fix that improves the item); any 0 requires a
    fix or a discard, each with a reason. A pass of an item whose chain of thought concludes
    on another option than the key needs `confirm_mismatch`, and a pass quicker than the
    project's `min_pass_seconds` needs `confirm_fast`; both are recorded with the verdict.
    `seconds_on_item` is the time the reviewer had the item on screen; when the caller cannot
    tell (no JavaScript, an API client that does not say), it is the time since the claim.
    The item row is locked for the check and the write. Long because its keywords and this
    docstring are half of it; the rest is the checks under the lock, in order, and one write.
    """
    queue_check_role(user=reviewer, stage=Stage.FIRST_REVIEW)
    now = now or timezone.now()
    reason = reason.strip()
    all_ones = relevance and correctness and sufficiency
    outcome = _verdict_check(action=action, all_ones=all_ones, reason=reason)
    with transaction.atomic():
        locked = _item_lock_at_first_pass(item)
        if seconds_on_item is None:
            seconds_on_item = _seconds_since_claim(item=locked, reviewer=reviewer, now=now)
        concluded = cot_concluded(version=locked.current_version)
        confirmations = []
        if action == "pass":
            confirmations = first_pass_confirmations_check(
                **_pass_facts(item=locked, concluded=concluded, seconds=seconds_on_item),
                confirm_mismatch=confirm_mismatch,
                confirm_fast=confirm_fast,
            )
        _reviewer_turn_check(item=locked, reviewer=reviewer, now=now)
        fix_data = _fix_data(fix=fix, current=locked.current_version) if action == "fix" else {}
        review = FirstPassReview.objects.create(
            item=locked,
            version=locked.current_version,
            reviewer=reviewer,
            relevance=relevance,
            correctness=correctness,
            sufficiency=sufficiency,
            outcome=outcome,
            reason=reason,
            comment=comment.strip(),
            fix=fix_data,
            seconds_on_item=max(0, min(int(seconds_on_item), 24 * 3600)),
            confirmations=confirmations,
            cot_concluded=concluded,
            effective_at=now + timedelta(seconds=undo_seconds()),
        )
        _lease_keep_until_effective(review=review)
    if undo_seconds() <= 0:
        review = _apply_without_undo_window(review)
    return review


def _fix_version_create(*, review: FirstPassReview, item: Item) -> ItemVersion:
    """The content version a fix verdict's edit becomes, authored by its reviewer."""
    return item_version_create(
        item=item,
        author_kind=AuthorKind.HUMAN,
        author=review.reviewer,
        reason=review.reason,
        stem=review.fix["stem"],
        options=review.fix["options"],
        answer=review.fix["answer"],
        cot=review.fix["cot"],
        marks_modified=True,
    )


def _pass_as_consensus_vote(*, review: FirstPassReview, item: Item) -> None:
    """An expert's pass counts as their consensus vote where the project says so."""
    if (
        review.outcome == FirstPassOutcome.PASS
        and item.project.first_pass_counts_for_consensus
        and has_role(review.reviewer, EXPERT)
    ):
        ConsensusVote.objects.get_or_create(
            item=item,
            version_id=review.version_id,
            expert=review.reviewer,
            defaults={
                "answer": item.current_version.answer,
                "approve_phrasing": True,
                "source": ConsensusVote.Source.FIRST_PASS,
            },
        )


def first_pass_apply(*, review_id: int) -> bool:
    """Make a held submission take effect. Idempotent: returns False if it already has (or was
    undone). Locks the item, then the review, in that order like every other writer here."""
    with transaction.atomic():
        review = FirstPassReview.objects.select_related("reviewer").get(pk=review_id)
        item = (
            Item.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=review.item_id)
        )
        review = FirstPassReview.objects.select_for_update().get(pk=review_id)
        if review.state != FirstPassState.HELD:
            return False
        if control_first_pass_take(review=review, item=item):
            # A control: kept as a control answer, never as a verdict (review/quality).
            return True
        if double_review_take(review=review, item=item):
            # Drawn for a second verdict, or two verdicts disagree (review/quality/double.py).
            return True
        reviewer = review.reviewer
        fix_version = None
        if review.outcome == FirstPassOutcome.FIXED:
            fix_version = _fix_version_create(review=review, item=item)
        target = (
            Status.DISCARDED if review.outcome == FirstPassOutcome.DISCARDED else Status.REANSWERING
        )
        try:
            transition(
                item,
                target,
                actor=reviewer,
                reason=review.reason,
                data={"first_pass_review": review.pk, "outcome": review.outcome},
            )
        except StaleStatus:
            # Someone (an admin) moved the item meanwhile; the verdict no longer applies.
            FirstPassReview.objects.filter(pk=review.pk).update(state=FirstPassState.UNDONE)
            return False
        FirstPassReview.objects.filter(pk=review.pk).update(
            state=FirstPassState.APPLIED, applied_at=timezone.now(), fix_version=fix_version
        )
        Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW).delete()
        _pass_as_consensus_vote(review=review, item=item)
        if target == Status.REANSWERING:
            reanswer_start(item_ids=[item.pk])
    return True


def first_pass_apply_due(
    *, now: datetime | None = None, reviewer=None, limit: int = 200, force: bool = False
) -> int:
    """Apply held submissions whose undo window has passed. Called on every queue visit and by
    the periodic task; `force` applies a reviewer's held submissions at once (end of session)."""
    now = now or timezone.now()
    due = FirstPassReview.objects.filter(state=FirstPassState.HELD)
    if not force:
        due = due.filter(effective_at__lte=now)
    if reviewer is not None:
        due = due.filter(reviewer=reviewer)
    applied = 0
    for review_id in due.order_by("effective_at").values_list("pk", flat=True)[:limit]:
        applied += first_pass_apply(review_id=review_id)
    return applied


def _nothing_to_undo(*, reviewer) -> str:
    """Why the reviewer has nothing to undo, judged by their latest submission."""
    latest = (
        FirstPassReview.objects.filter(reviewer=reviewer)
        .order_by("-created_at", "-id")
        .values_list("state", "created_at")
        .first()
    )
    control = control_last_answered_at(reviewer=reviewer, stage=Stage.FIRST_REVIEW)
    if control is not None and (latest is None or control > latest[1]):
        # The latest submission was to a control: it took effect like any verdict.
        latest = (FirstPassState.APPLIED, control)
    latest = latest[0] if latest else None
    if latest is None:
        return _("There is nothing left to undo: you have not submitted a review yet.")
    if latest == FirstPassState.UNDONE:
        return _("There is nothing left to undo: your last submission was already undone.")
    return _("There is nothing left to undo: your last submission has taken effect.")


def first_pass_undo(*, reviewer, now: datetime | None = None) -> FirstPassReview:
    """Take back the reviewer's last submission while it is still held. The item returns to
    the reviewer (their lease is renewed) so the view can show it again."""
    now = now or timezone.now()
    with transaction.atomic():
        review = (
            FirstPassReview.objects.filter(reviewer=reviewer, state=FirstPassState.HELD)
            .order_by("-created_at", "-id")
            .first()
        )
        if review is None or review.effective_at <= now:
            raise ReviewError(_nothing_to_undo(reviewer=reviewer))
        Item.objects.select_for_update().get(pk=review.item_id)
        review = FirstPassReview.objects.select_for_update().get(pk=review.pk)
        if review.state != FirstPassState.HELD:
            # It took effect (or was undone in another tab) while this request waited.
            raise ReviewError(_nothing_to_undo(reviewer=reviewer))
        FirstPassReview.objects.filter(pk=review.pk).update(state=FirstPassState.UNDONE)
        Lease.objects.update_or_create(
            item_id=review.item_id,
            stage=Stage.FIRST_REVIEW,
            defaults={
                "holder": reviewer,
                # The undone item goes back to the front of the reviewer's held items.
                "claimed_at": now - timedelta(days=1),
                "expires_at": now + timedelta(minutes=20),
            },
        )
        Event.objects.create(
            project_id=Item.objects.values_list("project_id", flat=True).get(pk=review.item_id),
            item_id=review.item_id,
            actor=reviewer,
            kind="first_pass_undone",
            data={"first_pass_review": review.pk},
        )
    review.state = FirstPassState.UNDONE
    return review


def first_pass_undoable(*, reviewer, now: datetime | None = None) -> FirstPassReview | None:
    now = now or timezone.now()
    return (
        FirstPassReview.objects.filter(
            reviewer=reviewer, state=FirstPassState.HELD, effective_at__gt=now
        )
        .select_related("item")
        .order_by("-created_at", "-id")
        .first()
    )
