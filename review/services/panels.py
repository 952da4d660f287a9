"""Expert panels for five-strike items: assignment, blind rubric scoring in rounds, revision,
and the decision when a round closes.

Locking: every writer takes the item row (`SELECT … FOR UPDATE`) before touching the panel, so
the last two experts submitting at the same instant are serialised and exactly one of them
closes the round.
"""

from __future__ import annotations

from collections import Counter

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.utils.translation import gettext as _

from medcot.lifecycle import Status, transition
from medcot.models import OPTION_LABELS, AuthorKind, Event, Item
from medcot.roles import ADMIN, EXPERT, has_role, require_role
from medcot.services import item_version_create
from review.models import (
    Adjudication,
    ConsensusVote,
    Decision,
    FirstPassReview,
    Panel,
    PanelDecision,
    PanelMembership,
    PanelState,
    RubricDimension,
    RubricScore,
)
from review.services.common import ReviewError, actor_or_none, regeneration_start
from review.services.consensus import consensus_evaluate
from review.services.first_pass import content_check
from review.services.rubric import rubric_guide_current

# A panel that keeps disagreeing grows by one expert at a time up to panel_size + this many;
# after that an admin decides.
EXTRA_EXPERTS = 2
MAX_ROUNDS = 4


def _lock(item: Item) -> Item:
    return (
        Item.objects.select_for_update(of=("self",))
        .select_related("project", "current_version")
        .get(pk=item.pk)
    )


def _event(item: Item, actor, kind: str, reason: str = "", **data) -> None:
    Event.objects.create(
        project_id=item.project_id,
        item_id=item.pk,
        actor=actor_or_none(actor),
        kind=kind,
        reason=reason,
        data=data,
    )


def panel_candidates(*, item: Item, exclude_ids: set[int] | frozenset[int] = frozenset()):
    """Experts who may sit on this item's panel, best first: the item's specialty, then the
    fewest open panels. The item's first-pass reviewers and authors are never candidates."""
    User = get_user_model()
    barred = set(exclude_ids)
    barred |= set(FirstPassReview.objects.filter(item=item).values_list("reviewer_id", flat=True))
    barred |= set(item.versions.exclude(author=None).values_list("author_id", flat=True).distinct())
    experts = (
        User.objects.filter(is_active=True)
        .filter(Q(groups__name=EXPERT))
        .exclude(pk__in=barred)
        .annotate(
            open_load=Count(
                "panel_memberships",
                filter=~Q(panel_memberships__panel__state=PanelState.CLOSED),
                distinct=True,
            )
        )
        .select_related("medcot_profile")
        .distinct()
    )

    def rank(user):
        profile = getattr(user, "medcot_profile", None)
        specialties = profile.specialties if profile is not None else []
        return (
            0 if item.specialty and item.specialty in specialties else 1,
            user.open_load,
            user.pk,
        )

    return sorted(experts, key=rank)


def panel_assign(*, item: Item, experts: list, actor, auto: bool = False) -> Panel:
    """Seat a panel on an item waiting in `panel` and move it to `panel_review`."""
    require_role(actor, ADMIN)
    with transaction.atomic():
        locked = _lock(item)
        if locked.status != Status.PANEL:
            raise ReviewError(_("This item is not waiting for a panel."))
        unique = {e.pk: e for e in experts}
        size = locked.project.panel_size
        if len(unique) < size:
            raise ReviewError(
                _("A panel needs at least %(n)d experts; %(got)d chosen.")
                % {"n": size, "got": len(unique)}
            )
        allowed = {u.pk for u in panel_candidates(item=locked)}
        for expert in unique.values():
            if not has_role(expert, EXPERT):
                raise ReviewError(_("%(who)s is not an expert.") % {"who": expert.get_username()})
            if expert.pk not in allowed:
                raise ReviewError(
                    _("%(who)s reviewed or wrote this item and cannot sit on its panel.")
                    % {"who": expert.get_username()}
                )
        panel = Panel.objects.create(
            item=locked, round_version=locked.current_version, created_by=actor_or_none(actor)
        )
        why = PanelMembership.Why.AUTO if auto else PanelMembership.Why.ASSIGNED
        for expert in unique.values():
            PanelMembership.objects.create(
                panel=panel, expert=expert, why=why, added_by=actor_or_none(actor)
            )
        transition(
            locked,
            Status.PANEL_REVIEW,
            actor=actor,
            reason=_("Panel assigned"),
            data={"experts": sorted(unique), "auto": auto},
        )
    return panel


def panel_auto_assign(*, item: Item, actor) -> Panel:
    candidates = panel_candidates(item=item)
    size = item.project.panel_size
    if len(candidates) < size:
        raise ReviewError(
            _("Only %(got)d eligible experts; the panel needs %(n)d.")
            % {"got": len(candidates), "n": size}
        )
    return panel_assign(item=item, experts=candidates[:size], actor=actor, auto=True)


def panel_refresh(*, item: Item) -> Panel | None:
    """Start the next round once a requested guided regeneration has produced a new version."""
    panel = Panel.objects.filter(item=item).first()
    if panel is None or panel.state != PanelState.REGENERATING:
        return panel
    with transaction.atomic():
        locked = _lock(item)
        panel = Panel.objects.select_for_update().get(pk=panel.pk)
        if (
            panel.state == PanelState.REGENERATING
            and locked.current_version_id != panel.round_version_id
        ):
            _new_round(panel, locked, actor=None, reason=_("Guided regeneration arrived"))
    return panel


def _new_round(panel: Panel, item: Item, *, actor, reason: str) -> None:
    panel.round += 1
    panel.round_version_id = item.current_version_id
    panel.state = PanelState.SCORING
    panel.save(update_fields=["round", "round_version", "state"])
    _event(item, actor, "panel_round_started", reason, round=panel.round)


def _position(d: PanelDecision) -> tuple[str, str]:
    return (d.decision, d.answer if d.decision == Decision.ACCEPT else "")


def _add_expert(panel: Panel, item: Item, *, actor, reason: str) -> PanelMembership | None:
    members = set(panel.memberships.values_list("expert_id", flat=True))
    if len(members) >= item.project.panel_size + EXTRA_EXPERTS:
        return None
    candidates = panel_candidates(item=item, exclude_ids=members)
    if not candidates:
        return None
    membership = PanelMembership.objects.create(
        panel=panel,
        expert=candidates[0],
        why=PanelMembership.Why.ADJUDICATION,
        joined_round=panel.round,
        added_by=actor_or_none(actor),
    )
    _event(item, actor, "panel_expert_added", reason, expert=candidates[0].pk, round=panel.round)
    return membership


def _approve(panel: Panel, item: Item, decisions: list[PanelDecision], actor) -> None:
    for d in decisions:
        ConsensusVote.objects.get_or_create(
            item=item,
            version_id=d.version_id,
            expert_id=d.expert_id,
            defaults={
                "answer": d.answer,
                "approve_phrasing": True,
                "comment": d.comment,
                "source": ConsensusVote.Source.PANEL,
            },
        )
    panel.state = PanelState.CLOSED
    panel.save(update_fields=["state"])
    transition(item, Status.CONSENSUS, actor=actor, reason=_("Panel accepted the item"))
    consensus_evaluate(item=item, actor=actor)


def _discard(panel: Panel, item: Item, actor, reason: str) -> None:
    panel.state = PanelState.CLOSED
    panel.save(update_fields=["state"])
    transition(item, Status.DISCARDED, actor=actor, reason=reason)


def panel_round_close(*, panel: Panel, item: Item, actor) -> str:
    """Decide a round once every member has submitted. The caller holds the item row lock.

    A strict majority of members taking the same position decides it: accept with the current
    key (given at least the consensus minimum of them) approves; discard discards; revise (or
    accept with another key) opens a revision. Without a majority a further expert is added
    automatically; when none is left an admin decides.
    """
    members = list(panel.memberships.all())
    decisions = list(panel.decisions.filter(round=panel.round))
    if {m.expert_id for m in members} - {d.expert_id for d in decisions}:
        return panel.state
    counts = Counter(_position(d) for d in decisions)
    (top, top_n), *_rest = counts.most_common()
    majority = top_n * 2 > len(decisions)
    key = item.current_version.answer
    if majority and top == (Decision.ACCEPT, key):
        backers = [d for d in decisions if _position(d) == top]
        if len(backers) >= item.project.consensus_minimum:
            _approve(panel, item, backers, actor)
            return panel.state
    elif majority and top[0] == Decision.DISCARD:
        _discard(panel, item, actor, _("The panel discarded the item."))
        return panel.state
    elif majority:
        panel.state = PanelState.REVISING
        panel.save(update_fields=["state"])
        _event(item, actor, "panel_revision_requested", round=panel.round)
        return panel.state
    reason = _("The panel disagrees on the key or the decision.")
    _event(item, actor, "panel_disagreement", reason, round=panel.round)
    if _add_expert(panel, item, actor=None, reason=reason) is None:
        panel.state = PanelState.ADJUDICATION
        panel.save(update_fields=["state"])
    return panel.state


def _member(panel: Panel, expert) -> PanelMembership:
    membership = panel.memberships.filter(expert=expert).first()
    if membership is None:
        raise ReviewError(_("You are not on this item's panel."))
    return membership


def _scoring_check(
    *, scores: dict[str, int], decision: str, comment: str, first_wrong_step: int | None
) -> None:
    """The submission's own consistency, before anything is read."""
    if set(scores) != set(RubricDimension.values):
        raise ReviewError(_("Score all five dimensions."), code="scores")
    if any(score not in (0, 1, 2) for score in scores.values()):
        raise ReviewError(_("Scores are 0, 1 or 2."), code="scores")
    if decision not in Decision.values:
        raise ReviewError(_("Choose accept, revise or discard."), code="decision")
    if decision != Decision.ACCEPT and not comment:
        raise ReviewError(
            _("Say why in the comment: revise and discard need a reason."), code="comment"
        )
    if first_wrong_step is not None and first_wrong_step < 1:
        raise ReviewError(_("Steps are numbered from 1."), code="first_wrong_step")


def _scores_store(*, item: Item, panel: Panel, expert, scores: dict[str, int]) -> None:
    """The expert's five rubric scores for this round, with the guide they read."""
    guide = rubric_guide_current()  # the one this expert reads, in their language
    RubricScore.objects.bulk_create(
        [
            RubricScore(
                item=item,
                version_id=item.current_version_id,
                expert=expert,
                round=panel.round,
                dimension=dimension,
                score=score,
                guide=guide,
            )
            for dimension, score in scores.items()
        ]
    )


def panel_submit(
    *,
    item: Item,
    expert,
    scores: dict[str, int],
    decision: str,
    answer: str,
    comment: str = "",
    first_wrong_step: int | None = None,
    seconds_on_item: int = 0,
) -> PanelDecision:
    """An expert's scores and decision for the panel's current round."""
    comment = comment.strip()
    _scoring_check(
        scores=scores, decision=decision, comment=comment, first_wrong_step=first_wrong_step
    )
    with transaction.atomic():
        locked = _lock(item)
        panel = Panel.objects.select_for_update().filter(item=locked).first()
        if locked.status != Status.PANEL_REVIEW or panel is None:
            raise ReviewError(_("This item is not under panel review."))
        _member(panel, expert)
        if panel.state != PanelState.SCORING:
            raise ReviewError(_("This panel is not scoring right now."))
        if locked.current_version_id != panel.round_version_id:
            raise ReviewError(_("The item changed since this round started; reload it."))
        if answer not in locked.current_version.options:
            raise ReviewError(_("Choose the option you hold correct."), code="answer")
        if panel.decisions.filter(expert=expert, round=panel.round).exists():
            raise ReviewError(_("You have already scored this round."))
        _scores_store(item=locked, panel=panel, expert=expert, scores=scores)
        result = PanelDecision.objects.create(
            panel=panel,
            item=locked,
            version_id=locked.current_version_id,
            expert=expert,
            round=panel.round,
            decision=decision,
            answer=answer,
            comment=comment,
            first_wrong_step=first_wrong_step,
            seconds_on_item=max(0, min(int(seconds_on_item), 24 * 3600)),
        )
        panel_round_close(panel=panel, item=locked, actor=expert)
    return result


def panel_revise(
    *,
    item: Item,
    expert,
    reason: str,
    cot: str,
    answer: str,
    stem: str | None = None,
    options: dict[str, str] | None = None,
) -> Panel:
    """A member's edit of the CoT or key (and, when given, the stem or the whole set of
    options); the new version goes back to the same panel. The content is checked against what
    the database accepts, so a bad edit is a ReviewError for every caller, never an
    IntegrityError."""
    reason = reason.strip()
    if not reason:
        raise ReviewError(_("Say what the revision changes and why."))
    if not isinstance(cot, str):
        raise ReviewError(_("The chain of thought must be text."))
    with transaction.atomic():
        locked = _lock(item)
        panel = Panel.objects.select_for_update().filter(item=locked).first()
        if panel is None or locked.status != Status.PANEL_REVIEW:
            raise ReviewError(_("This item is not under panel review."))
        _member(panel, expert)
        if panel.state != PanelState.REVISING:
            raise ReviewError(_("The panel has not asked for a revision."))
        current = locked.current_version
        new_stem, new_options = content_check(
            stem=current.stem if stem is None else stem,
            options=current.options if options is None else options,
            answer=answer,
        )
        old_options = {label: current.options.get(label, "").strip() for label in OPTION_LABELS}
        if (
            cot.strip() == current.cot.strip()
            and answer == current.answer
            and new_stem == current.stem.strip()
            and new_options == old_options
        ):
            raise ReviewError(_("The revision changes nothing."))
        item_version_create(
            item=locked,
            author_kind=AuthorKind.HUMAN,
            author=expert,
            reason=reason,
            stem=None if stem is None else new_stem,
            options=None if options is None else new_options,
            answer=answer,
            cot=cot.strip(),
            marks_modified=True,
        )
        _new_round(panel, locked, actor=expert, reason=reason)
    return panel


def panel_request_regeneration(*, item: Item, expert, guidance: str) -> Panel:
    """Ask the model to rewrite the CoT following the panel's comments; the next round starts
    when the new version arrives (see `panel_refresh`)."""
    guidance = guidance.strip()
    if not guidance:
        raise ReviewError(_("Tell the model what to change."))
    with transaction.atomic():
        locked = _lock(item)
        panel = Panel.objects.select_for_update().filter(item=locked).first()
        if panel is None or locked.status != Status.PANEL_REVIEW:
            raise ReviewError(_("This item is not under panel review."))
        _member(panel, expert)
        if panel.state != PanelState.REVISING:
            raise ReviewError(_("The panel has not asked for a revision."))
        panel.state = PanelState.REGENERATING
        panel.save(update_fields=["state"])
        _event(locked, expert, "panel_regeneration_requested", guidance, round=panel.round)
        regeneration_start(item_id=locked.pk, guidance=guidance, actor_id=expert.pk)
    return panel


def _expert_add(panel: Panel, item: Item, *, expert, admin) -> None:
    """An admin adds an eligible expert to the panel, which scores again if it was waiting
    for an admin."""
    if expert is None or not has_role(expert, EXPERT):
        raise ReviewError(_("Choose an expert to add."))
    members = set(panel.memberships.values_list("expert_id", flat=True))
    allowed = {u.pk for u in panel_candidates(item=item, exclude_ids=members)}
    if expert.pk not in allowed:
        raise ReviewError(_("That expert cannot join this panel."))
    PanelMembership.objects.create(
        panel=panel,
        expert=expert,
        why=PanelMembership.Why.ADJUDICATION,
        joined_round=panel.round,
        added_by=admin,
    )
    if panel.state == PanelState.ADJUDICATION:
        panel.state = PanelState.SCORING
        panel.save(update_fields=["state"])


def adjudication_decide(
    *, item: Item, admin, outcome: str, reason: str, expert=None
) -> Adjudication:
    """An admin settles a deadlock, always with a reason. Accepting still needs the consensus
    minimum of experts behind the key: the admin picks a side, never overrules the gate."""
    require_role(admin, ADMIN)
    reason = reason.strip()
    if not reason:
        raise ReviewError(_("An admin decision needs a reason."))
    if outcome not in Adjudication.Outcome.values:
        raise ReviewError(_("Unknown decision."))
    with transaction.atomic():
        locked = _lock(item)
        panel = Panel.objects.select_for_update().filter(item=locked).first()
        in_panel = panel is not None and locked.status == Status.PANEL_REVIEW
        if locked.status not in {Status.PANEL_REVIEW, Status.CONSENSUS}:
            raise ReviewError(_("Only items under panel review or at consensus are decided here."))
        data: dict = {}
        if outcome == Adjudication.Outcome.DISCARD:
            if in_panel:
                _discard(panel, locked, admin, reason)
            else:
                transition(locked, Status.DISCARDED, actor=admin, reason=reason)
        elif not in_panel:
            raise ReviewError(_("At consensus an admin can only discard; experts decide the rest."))
        elif outcome == Adjudication.Outcome.ACCEPT:
            key = locked.current_version.answer
            latest = panel.decisions.filter(round=panel.round)
            backers = [d for d in latest if _position(d) == (Decision.ACCEPT, key)]
            if len(backers) < locked.project.consensus_minimum:
                raise ReviewError(
                    _("Fewer than %(n)d experts accepted the current key; it cannot be approved.")
                    % {"n": locked.project.consensus_minimum}
                )
            _approve(panel, locked, backers, admin)
        elif outcome == Adjudication.Outcome.NEW_ROUND:
            if panel.round >= MAX_ROUNDS:
                raise ReviewError(_("This panel has had its last round."))
            _new_round(panel, locked, actor=admin, reason=reason)
        else:
            _expert_add(panel, locked, expert=expert, admin=admin)
            data["expert"] = expert.pk
        record = Adjudication.objects.create(
            item=locked, admin=admin, outcome=outcome, reason=reason, data=data
        )
        _event(locked, admin, "adjudicated", reason, outcome=outcome, **data)
    return record
