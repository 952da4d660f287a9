"""Reads of the review app, with one access-checking getter per object."""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, Min, OuterRef, Q
from django.http import Http404
from django.utils import timezone

from medcot.lifecycle import Status
from medcot.models import Event, Item
from medcot.roles import ADMIN, EXPERT, REVIEWER, has_role
from review.models import (
    Adjudication,
    ConsensusVote,
    FirstPassReview,
    FirstPassState,
    Lease,
    Panel,
    PanelDecision,
    PanelMembership,
    PanelState,
    Profile,
    RubricDimension,
    RubricScore,
    Stage,
)


def _item(pk: int) -> Item:
    item = (
        Item.objects.select_related(
            "project", "current_version", "family", "family__current_version"
        )
        .filter(pk=pk)
        .first()
    )
    if item is None:
        raise Http404
    return item


def item_get_for_reviewer(*, user, pk: int) -> Item:
    """An item a reviewer (or expert) may review at first pass: in that stage and not leased to
    someone else. 404 for no such item, 403 for the wrong role or someone else's item."""
    if not has_role(user, REVIEWER, EXPERT):
        raise PermissionDenied
    item = _item(pk)
    if item.status != Status.FIRST_REVIEW:
        raise Http404
    taken = (
        Lease.objects.filter(item=item, stage=Stage.FIRST_REVIEW, expires_at__gt=timezone.now())
        .exclude(holder=user)
        .exists()
    )
    if taken:
        raise PermissionDenied
    return item


def item_get_for_consensus(*, user, pk: int) -> Item:
    if not has_role(user, EXPERT):
        raise PermissionDenied
    item = _item(pk)
    if item.status != Status.CONSENSUS:
        raise Http404
    from review.quality.controls import control_status_shown

    if control_status_shown(item_id=pk, reviewer=user) not in (None, Status.CONSENSUS):
        # A control this expert's vote "settled" is gone for them, as a settled item would be.
        raise Http404
    return item


def item_get_for_panel_member(*, user, pk: int) -> tuple[Item, Panel]:
    """An item under panel review, for one of its panel's experts (admins may look too)."""
    if not has_role(user, EXPERT, ADMIN):
        raise PermissionDenied
    item = _item(pk)
    panel = Panel.objects.filter(item=item).first()
    if panel is None:
        raise Http404
    if not panel.memberships.filter(expert=user).exists() and not has_role(user, ADMIN):
        raise PermissionDenied
    return item, panel


def item_get_for_admin(*, user, pk: int) -> Item:
    if not has_role(user, ADMIN):
        raise PermissionDenied
    return _item(pk)


def item_get_for_history(*, user, pk: int) -> Item:
    """Admins see every history; experts see the items whose panel they sit on."""
    item = _item(pk)
    if has_role(user, ADMIN):
        return item
    if (
        has_role(user, EXPERT)
        and PanelMembership.objects.filter(panel__item=item, expert=user).exists()
    ):
        return item
    raise PermissionDenied


def reanswer_attempts(*, item: Item) -> list:
    """Every model re-answer attempt, through the generation app's published module."""
    from generation.public import reanswer_attempts_for_item

    return list(reanswer_attempts_for_item(item=item))


def panel_waiting_items(*, project_id: int | None = None) -> list[Item]:
    items = Item.objects.filter(status=Status.PANEL).select_related("project", "current_version")
    if project_id is not None:
        items = items.filter(project_id=project_id)
    return list(items.order_by("status_changed_at", "id")[:200])


NO_SPECIALTY = "-"


def panel_waiting_query(
    *,
    project_id: int | None = None,
    specialty: str | None = None,
    waited_days: int | None = None,
    min_wrong: int | None = None,
    now=None,
):
    """Items waiting for a panel that match the filter, oldest first, with how many re-answer
    attempts missed the key (`wrong_attempts`). `specialty` NO_SPECIALTY means none set."""
    now = now or timezone.now()
    items = (
        Item.objects.filter(status=Status.PANEL)
        .select_related("project", "current_version")
        .annotate(
            wrong_attempts=Count(
                "reanswer_attempts", filter=Q(reanswer_attempts__correct=False), distinct=True
            )
        )
    )
    if project_id is not None:
        items = items.filter(project_id=project_id)
    if specialty == NO_SPECIALTY:
        items = items.filter(specialty="")
    elif specialty:
        items = items.filter(specialty=specialty)
    if waited_days:
        items = items.filter(status_changed_at__lte=now - timedelta(days=waited_days))
    if min_wrong:
        items = items.filter(wrong_attempts__gte=min_wrong)
    return items.order_by("status_changed_at", "id")


def panel_waiting_specialties() -> list[str]:
    """The specialties of items waiting for a panel, for the filter, each once (no ordering in
    the query: the model's default `id` would make DISTINCT keep one row per item)."""
    return sorted(
        Item.objects.filter(status=Status.PANEL)
        .exclude(specialty="")
        .order_by()
        .values_list("specialty", flat=True)
        .distinct()
    )


def expert_specialties() -> list[str]:
    """Every specialty some expert declares: what an item's specialty can usefully match."""
    found: set[str] = set()
    for values in Profile.objects.filter(user__groups__name=EXPERT).values_list(
        "specialties", flat=True
    ):
        found.update(v for v in values or [] if v)
    return sorted(found)


def panels_needing_admin() -> list[Panel]:
    return list(
        Panel.objects.filter(state=PanelState.ADJUDICATION)
        .select_related("item", "item__project")
        .order_by("item_id")
    )


def panels_open() -> list[Panel]:
    return list(
        Panel.objects.exclude(state=PanelState.CLOSED)
        .select_related("item", "item__project")
        .prefetch_related("memberships__expert")
        .order_by("item_id")
    )


def expert_panel_queue(*, user) -> list[dict]:
    """The expert's open panels, with what each one waits for from them."""
    rows = []
    memberships = (
        PanelMembership.objects.filter(expert=user)
        .exclude(panel__state=PanelState.CLOSED)
        .select_related("panel", "panel__item", "panel__item__current_version")
        .order_by("panel__item_id")
    )
    for membership in memberships:
        panel = membership.panel
        submitted = panel.decisions.filter(round=panel.round, expert=user).exists()
        if panel.state == PanelState.SCORING:
            todo = "wait" if submitted else "score"
        elif panel.state == PanelState.REVISING:
            todo = "revise"
        else:
            todo = "wait"
        rows.append({"panel": panel, "item": panel.item, "todo": todo})
    order = {"score": 0, "revise": 1, "wait": 2}
    # Worst judge risk first, for projects that use the judge for it where it is trusted.
    from review.judge.services import risk_of_items

    risk = risk_of_items(item_ids=[row["item"].pk for row in rows])
    return sorted(
        rows, key=lambda row: (order[row["todo"]], -risk.get(row["item"].pk, -1), row["item"].pk)
    )


def panel_round_view(*, panel: Panel, user) -> dict:
    """Scores and decisions of the panel's rounds as `user` may see them: a round's other
    experts stay hidden until every member has submitted that round (blind scoring)."""
    members = list(panel.memberships.select_related("expert").order_by("created_at", "id"))
    rounds = []
    for number in range(panel.round, 0, -1):
        decisions = list(
            PanelDecision.objects.filter(panel=panel, round=number)
            .select_related("expert", "version")
            .order_by("created_at", "id")
        )
        expected = {m.expert_id for m in members if m.joined_round <= number}
        # Members added in a later round count for that round only; a round is complete once
        # everyone expected at its end has submitted (or it is a closed past round).
        complete = number < panel.round or expected <= {d.expert_id for d in decisions}
        scores = RubricScore.objects.filter(item=panel.item, round=number)
        by_expert: dict[int, dict[str, int]] = {}
        for score in scores:
            by_expert.setdefault(score.expert_id, {})[score.dimension] = score.score
        visible = []
        for decision in decisions:
            mine = decision.expert_id == user.pk
            if complete or mine:
                visible.append(
                    {
                        "decision": decision,
                        "mine": mine,
                        "scores": [
                            by_expert.get(decision.expert_id, {}).get(d.value)
                            for d in RubricDimension
                        ],
                    }
                )
        rounds.append(
            {
                "number": number,
                "complete": complete,
                "submitted_count": len(decisions),
                "expected_count": len(expected),
                "visible": visible,
                "hidden_count": len(decisions) - len(visible),
            }
        )
    mine_now = next((d for d in panel.decisions.filter(round=panel.round, expert=user)), None)
    return {"members": members, "rounds": rounds, "my_decision": mine_now}


def first_pass_reviews_for_item(*, item: Item) -> list[FirstPassReview]:
    return list(
        FirstPassReview.objects.filter(item=item)
        .select_related("reviewer", "version", "fix_version")
        .order_by("created_at", "id")
    )


def _round_open_for(panel: Panel) -> bool:
    """Whether the panel's current round still has members to hear from (scores stay blind)."""
    if panel.state == PanelState.CLOSED:
        return False
    expected = set(
        panel.memberships.filter(joined_round__lte=panel.round).values_list("expert_id", flat=True)
    )
    submitted = set(panel.decisions.filter(round=panel.round).values_list("expert_id", flat=True))
    return not expected <= submitted


def item_full_history(*, item: Item, viewer=None) -> dict:
    """Everything that happened to an item, for the history page. For a viewer who is not an
    admin, other experts' scores of a round that is still open stay hidden (blind scoring)."""
    versions = list(item.versions.select_related("author").order_by("number"))
    pairs = []
    previous = None
    for version in versions:
        pairs.append({"version": version, "previous": previous})
        previous = version
    pairs.reverse()
    panel = Panel.objects.filter(item=item).first()
    scores_by_key: dict[tuple[int, int], dict[str, int]] = {}
    for score in RubricScore.objects.filter(item=item):
        scores_by_key.setdefault((score.round, score.expert_id), {})[score.dimension] = score.score
    decisions = []
    blind_round = None
    if panel is not None and viewer is not None and not has_role(viewer, ADMIN):
        blind_round = panel.round if _round_open_for(panel) else None
    if panel is not None:
        for decision in panel.decisions.select_related("expert", "version").order_by(
            "round", "created_at"
        ):
            if decision.round == blind_round and decision.expert_id != viewer.pk:
                continue
            per = scores_by_key.get((decision.round, decision.expert_id), {})
            decisions.append(
                {"decision": decision, "scores": [per.get(d.value) for d in RubricDimension]}
            )
    return {
        "versions": pairs,
        "first_pass": first_pass_reviews_for_item(item=item),
        "attempts": reanswer_attempts(item=item),
        "panel": panel,
        "members": list(panel.memberships.select_related("expert")) if panel else [],
        "decisions": decisions,
        "votes": list(
            ConsensusVote.objects.filter(item=item)
            .select_related("expert", "version")
            .order_by("created_at")
        ),
        "adjudications": list(
            Adjudication.objects.filter(item=item).select_related("admin").order_by("created_at")
        ),
        "events": list(
            Event.objects.filter(item=item).select_related("actor").order_by("created_at", "id")
        ),
        "dimensions": list(RubricDimension),
    }


def _queue_rows(*, now) -> list[dict]:
    """Each review queue's depth, oldest wait and leased items."""
    queues = []
    for status in (Status.FIRST_REVIEW, Status.PANEL, Status.PANEL_REVIEW, Status.CONSENSUS):
        agg = Item.objects.filter(status=status, control__isnull=True).aggregate(
            n=Count("id"), oldest=Min("status_changed_at")
        )
        leased = Lease.objects.filter(stage=status, expires_at__gt=now, item__status=status).count()
        queues.append(
            {
                "status": status,
                "depth": agg["n"],
                "oldest_age": (now - agg["oldest"]) if agg["oldest"] else None,
                "leased": leased,
            }
        )
    return queues


def _people_rows(*, since, days: int) -> list[dict]:
    """Each person's first-pass reviews, panel decisions and queue votes since `since`,
    busiest reviewer first."""
    User = get_user_model()
    people = []
    reviews = FirstPassReview.objects.filter(created_at__gte=since, state=FirstPassState.APPLIED)
    per_person: dict[int, list[int]] = {}
    for reviewer_id, seconds in reviews.values_list("reviewer_id", "seconds_on_item"):
        per_person.setdefault(reviewer_id, []).append(seconds)
    panel_counts = dict(
        PanelDecision.objects.filter(created_at__gte=since)
        .values_list("expert_id")
        .annotate(n=Count("id"))
    )
    vote_counts = dict(
        ConsensusVote.objects.filter(created_at__gte=since, source=ConsensusVote.Source.QUEUE)
        .values_list("expert_id")
        .annotate(n=Count("id"))
    )
    ids = set(per_person) | set(panel_counts) | set(vote_counts)
    users = User.objects.in_bulk(ids)
    for pk in sorted(ids, key=lambda pk: -len(per_person.get(pk, []))):
        seconds = per_person.get(pk, [])
        people.append(
            {
                "user": users.get(pk),
                "first_pass": len(seconds),
                "per_day": round(len(seconds) / days, 1),
                "median_seconds": statistics.median(seconds) if seconds else None,
                "panel": panel_counts.get(pk, 0),
                "votes": vote_counts.get(pk, 0),
            }
        )
    return people


def overview_stats(*, now=None, days: int = 7) -> dict:
    """The admin overview: funnel counts, queue depth and age, leases, throughput."""
    now = now or timezone.now()
    counts = {status.value: 0 for status in Status}
    for row in Item.objects.filter(control__isnull=True).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    queues = _queue_rows(now=now)
    leases = list(Lease.objects.select_related("holder", "item").order_by("expires_at")[:200])
    stale = [lease for lease in leases if lease.expires_at <= now]
    people = _people_rows(since=now - timedelta(days=days), days=days)
    return {
        "counts": [(status, counts[status.value]) for status in Status],
        "queues": queues,
        "leases": [lease for lease in leases if lease.expires_at > now],
        "stale": stale,
        "people": people,
        "days": days,
        "held_reviews": FirstPassReview.objects.filter(state=FirstPassState.HELD).count(),
        "needs_admin": Panel.objects.filter(state=PanelState.ADJUDICATION).count(),
        "consensus_disputed": Item.objects.filter(status=Status.CONSENSUS)
        .annotate(
            disputes=Count(
                "consensus_votes",
                filter=Q(consensus_votes__approve_phrasing=False),
            )
        )
        .filter(disputes__gt=0)
        .count(),
    }


def items_held_by(*, user, items):
    """Narrow an item queryset to what `user` holds now: a live queue lease at the item's
    current stage, or a seat on its panel while the panel is open. `medcot.permissions` asks
    this for reviewers and experts, so the API shows them the same items the browser does."""
    now = timezone.now()
    leased = Lease.objects.filter(
        item=OuterRef("pk"), holder=user, stage=OuterRef("status"), expires_at__gt=now
    )
    seated = PanelMembership.objects.filter(panel__item=OuterRef("pk"), expert=user).exclude(
        panel__state=PanelState.CLOSED
    )
    return items.filter(Exists(leased) | Exists(seated))


def profile_language(*, user) -> str:
    """The interface language a person chose ("" for the browser's choice)."""
    return Profile.objects.filter(user=user).values_list("language", flat=True).first() or ""


def cot_concluded(*, version) -> str:
    """The option the chain of thought ends on, or "" when it names none.

    The CoT text itself is read (with the same parser the re-answers use), so a version a
    reviewer edited is judged by what it now says; the model's own pick at generation time is
    the fallback for a CoT whose wording the parser cannot read."""
    if version is None or not version.cot:
        return ""
    from generation.public import parse_answer

    parsed = parse_answer(version.cot, version.options)
    if parsed.ok and parsed.letter:
        return parsed.letter
    picked = (version.provenance or {}).get("picked") or ""
    return picked if picked in version.options else ""


def model_verdict(*, version, attempts=None) -> dict:
    """What the model concluded next to the key, for the review screens: the CoT's own
    conclusion, and how the re-answer attempts (when there are any) answered.

    `mismatch` is the flag that needs a reviewer's confirmation to pass the item;
    `attempts_disagree` marks re-answers that did not all give the key."""
    key = version.answer if version is not None else ""
    concluded = cot_concluded(version=version)
    attempts = list(attempts or [])
    answered = [a for a in attempts if getattr(a, "answer", "")]
    agreeing = [a for a in answered if a.answer == key]
    others = sorted({a.answer for a in answered if a.answer != key})
    return {
        "key": key,
        "concluded": concluded,
        "mismatch": bool(concluded) and concluded != key,
        "unreadable": bool(version is not None and version.cot) and not concluded,
        "attempts": len(attempts),
        "attempts_agree": len(agreeing),
        "attempts_other": others,
        "attempts_disagree": bool(attempts) and len(agreeing) < len(attempts),
    }


def panel_deadlock_reason(*, panel: Panel, item: Item) -> str:
    """Why a panel waits for an admin: how its last round split, and why no further expert
    was added. "" when the panel is not waiting for an admin."""
    from django.utils.translation import gettext as _
    from django.utils.translation import ngettext

    from review.services.panels import EXTRA_EXPERTS

    if panel.state != PanelState.ADJUDICATION:
        return ""
    decisions = list(panel.decisions.filter(round=panel.round))
    positions: dict[str, int] = {}
    for d in decisions:
        if d.decision == "accept":
            label = _("accept with key %(key)s") % {"key": d.answer}
        else:
            label = d.get_decision_display().lower()
        positions[label] = positions.get(label, 0) + 1
    split = ", ".join(
        ngettext("%(n)d expert: %(what)s", "%(n)d experts: %(what)s", n) % {"n": n, "what": what}
        for what, n in sorted(positions.items(), key=lambda kv: -kv[1])
    )
    members = panel.memberships.count()
    limit = item.project.panel_size + EXTRA_EXPERTS
    if members >= limit:
        why = _("the panel already has its maximum of %(n)d experts") % {"n": limit}
    else:
        why = _("no other eligible expert is left to add")
    return _("Round %(round)d ended without a majority (%(split)s), and %(why)s.") % {
        "round": panel.round,
        "split": split,
        "why": why,
    }


def expert_pseudonyms() -> dict[int, str]:
    """User id → pseudonym. Releases name experts only by these; a user without a profile
    gets a stable placeholder that still reveals nothing about them."""
    return dict(Profile.objects.values_list("user_id", "pseudonym"))


def pseudonym(pseudonyms: dict[int, str], user_id: int) -> str:
    return pseudonyms.get(user_id) or f"expert-{user_id}"
