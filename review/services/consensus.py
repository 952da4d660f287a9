"""The consensus gate: no item is approved without enough experts agreeing on its key and its
phrasing. Votes are counted on the item's current version only; a new version starts over."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils.translation import gettext as _

from medcot.lifecycle import Status, transition
from medcot.models import Item
from medcot.roles import EXPERT, has_role
from review.models import ConsensusVote, Lease, Stage
from review.quality.controls import control_answered, control_consensus_take
from review.selectors import cot_concluded
from review.services.common import ReviewError
from review.services.queue import lease_held_by_other

# Beyond the minimum, this many further experts may be asked before an item that keeps drawing
# disagreement is discarded as unable to reach consensus.
EXTRA_VOTES = 2


def consensus_outcome(*, agree: int, votes: int, needed: int) -> str:
    """The status the votes on one version decide: approved once `needed` agree; discarded at
    the cap, or when the votes left under it can no longer make `needed`; else consensus."""
    cap = needed + EXTRA_VOTES
    if agree >= needed:
        return Status.APPROVED
    if votes >= cap or needed - agree > cap - votes:
        return Status.DISCARDED
    return Status.CONSENSUS


def consensus_tally(*, item: Item) -> dict:
    votes = list(
        ConsensusVote.objects.filter(item=item, version_id=item.current_version_id).select_related(
            "expert"
        )
    )
    key = item.current_version.answer
    agree = [v for v in votes if v.answer == key and v.approve_phrasing]
    return {
        "votes": votes,
        "agree": len(agree),
        "disagree": len(votes) - len(agree),
        "needed": item.project.consensus_minimum,
        "cap": item.project.consensus_minimum + EXTRA_VOTES,
    }


def consensus_evaluate(*, item: Item, actor=None) -> str:
    """Approve, discard or keep waiting. The caller holds the item row lock, so two experts
    submitting at the same instant produce exactly one decision. Returns the item's status."""
    tally = consensus_tally(item=item)
    decided = consensus_outcome(
        agree=tally["agree"], votes=len(tally["votes"]), needed=tally["needed"]
    )
    if decided == Status.APPROVED:
        transition(
            item,
            Status.APPROVED,
            actor=actor,
            reason=_("%(n)d experts agree on the key and approve the phrasing.")
            % {"n": tally["agree"]},
            data={"votes": [v.pk for v in tally["votes"]]},
        )
        Lease.objects.filter(item=item).delete()
    elif decided == Status.DISCARDED:
        transition(
            item,
            Status.DISCARDED,
            actor=actor,
            reason=_("No consensus: %(agree)d of %(n)d experts agreed with the key and phrasing.")
            % {"agree": tally["agree"], "n": len(tally["votes"])},
            data={"votes": [v.pk for v in tally["votes"]]},
        )
        Lease.objects.filter(item=item).delete()
    return item.status


def _vote_check(*, item: Item, expert, answer: str, approve_phrasing: bool, comment: str) -> None:
    """Refuse a vote on an item (locked) not at consensus, an answer that is not an option, a
    dissent without a comment, and a vote the expert may not give now."""
    if item.status != Status.CONSENSUS:
        raise ReviewError(_("This item is no longer waiting for consensus."))
    if answer not in item.current_version.options:
        raise ReviewError(_("Choose the option you hold correct."))
    if not approve_phrasing and not comment:
        raise ReviewError(_("Say what is wrong with the phrasing in the comment."))
    if answer != item.current_version.answer and not comment:
        raise ReviewError(_("Say why you hold another answer correct in the comment."))
    if item.current_version.author_id == expert.pk:
        raise ReviewError(_("You wrote this version; other experts must judge it."))
    if lease_held_by_other(user=expert, item_id=item.pk, stage=Stage.CONSENSUS):
        raise ReviewError(_("Another expert is voting on this item right now."))
    if ConsensusVote.objects.filter(
        item=item, version_id=item.current_version_id, expert=expert
    ).exists() or control_answered(item_id=item.pk, reviewer=expert):
        raise ReviewError(_("You have already voted on this version."))


def _vote_confirmations(*, item: Item, answer: str, confirm_mismatch: bool) -> list[str]:
    """Agreeing with a key the chain of thought does not conclude on needs `confirm_mismatch`;
    returns the confirmations to keep with the vote."""
    concluded = cot_concluded(version=item.current_version)
    if answer == item.current_version.answer and concluded and concluded != answer:
        if not confirm_mismatch:
            raise ReviewError(
                _(
                    "The chain of thought concludes on %(concluded)s, not on the key "
                    "%(key)s. Confirm (x) that the key is right, or choose another answer."
                )
                % {"concluded": concluded, "key": answer},
                code="confirm_mismatch",
            )
        return ["mismatch"]
    return []


def consensus_vote(
    *,
    item: Item,
    expert,
    answer: str,
    approve_phrasing: bool,
    comment: str = "",
    confirm_mismatch: bool = False,
) -> ConsensusVote:
    """An expert's vote from the consensus queue. A disagreeing vote leaves the item in the
    queue, where the next expert is handed it automatically, up to the cap. Agreeing with a
    key the chain of thought does not conclude on needs `confirm_mismatch` (kept with the
    vote), as a first-pass pass does."""
    if not has_role(expert, EXPERT):
        raise ReviewError(_("Only experts vote on consensus."))
    comment = comment.strip()
    with transaction.atomic():
        locked = (
            Item.objects.select_for_update(of=("self",))
            .select_related("current_version", "project")
            .get(pk=item.pk)
        )
        _vote_check(
            item=locked,
            expert=expert,
            answer=answer,
            approve_phrasing=approve_phrasing,
            comment=comment,
        )
        confirmations = _vote_confirmations(
            item=locked, answer=answer, confirm_mismatch=confirm_mismatch
        )
        vote = ConsensusVote.objects.create(
            item=locked,
            version_id=locked.current_version_id,
            expert=expert,
            answer=answer,
            approve_phrasing=approve_phrasing,
            comment=comment,
            source=ConsensusVote.Source.QUEUE,
            confirmations=confirmations,
        )
        if control_consensus_take(vote=vote, item=locked):
            # A control: kept as a control answer, never as a vote (review/quality).
            return vote
        Lease.objects.filter(item=locked, stage=Stage.CONSENSUS, holder=expert).delete()
        consensus_evaluate(item=locked, actor=expert)
    return vote


def consensus_settle_ready(*, limit: int = 100) -> int:
    """Approve items that reached `consensus` already carrying enough agreeing votes (an
    expert's first-pass pass counts, and re-answering moves items without asking us).
    Returns how many were approved."""
    ready = (
        Item.objects.filter(status=Status.CONSENSUS)
        .annotate(
            agree=Count(
                "consensus_votes",
                filter=Q(consensus_votes__version_id=F("current_version_id"))
                & Q(consensus_votes__answer=F("current_version__answer"))
                & Q(consensus_votes__approve_phrasing=True),
            )
        )
        .filter(agree__gte=F("project__consensus_minimum"))
        .values_list("pk", flat=True)[:limit]
    )
    approved = 0
    for pk in list(ready):
        with transaction.atomic():
            locked = (
                Item.objects.select_for_update(of=("self",))
                .select_related("current_version", "project")
                .get(pk=pk)
            )
            if locked.status == Status.CONSENSUS:
                approved += consensus_evaluate(item=locked) == Status.APPROVED
    return approved
