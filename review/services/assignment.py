"""Panels for many items at once, and the specialty that panel assignment matches on.

Each item is assigned in its own transaction (through `panel_assign`), so one item that cannot
be assigned never holds back the others; the result says, per item, who was chosen and why, or
why nobody could be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from medcot.i18n import specialty_label
from medcot.lifecycle import Status
from medcot.models import Event, Item
from medcot.roles import ADMIN, EXPERT, has_role, require_role
from review.services.common import ReviewError, actor_or_none
from review.services.panels import panel_assign, panel_candidates

# At most this many items per bulk action: a page of selections, not the whole database.
BULK_MAX = 500


def max_open_panels() -> int:
    """How many open panels one expert may sit on before auto-assignment passes them over."""
    return int(getattr(settings, "REVIEW_MAX_OPEN_PANELS", 25))


@dataclass
class Assigned:
    item: Item
    experts: list
    why: str


@dataclass
class NotAssigned:
    item: Item
    why: str


@dataclass
class BulkResult:
    assigned: list[Assigned] = field(default_factory=list)
    not_assigned: list[NotAssigned] = field(default_factory=list)


def _specialties(user) -> list[str]:
    profile = getattr(user, "medcot_profile", None)
    return list(profile.specialties or []) if profile is not None else []


def _name(user) -> str:
    profile = getattr(user, "medcot_profile", None)
    return (profile.display_name if profile is not None else "") or user.get_username()


def _explain(item: Item, chosen: list) -> str:
    """Why these experts: specialty match, then fewest open panels."""
    parts = []
    for expert in chosen:
        matched = bool(item.specialty) and item.specialty in _specialties(expert)
        load = getattr(expert, "open_load", 0)
        detail = ngettext("%(n)d open panel", "%(n)d open panels", load) % {"n": load}
        if matched:
            detail = _("%(specialty)s, %(detail)s") % {
                "specialty": specialty_label(item.specialty),
                "detail": detail,
            }
        parts.append(_("%(name)s (%(detail)s)") % {"name": _name(expert), "detail": detail})
    text = _("Chose %(experts)s.") % {"experts": _(", ").join(parts)}
    if not item.specialty:
        text += " " + _("The item has no specialty: chosen by fewest open panels.")
    elif not any(item.specialty in _specialties(e) for e in chosen):
        text += " " + _("No expert of %(specialty)s was free: chosen by fewest open panels.") % {
            "specialty": specialty_label(item.specialty)
        }
    return text


def panel_experts_all() -> list:
    """Every active expert with their open panel count, for choosing experts by hand."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count, Q

    from review.models import PanelState

    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name=EXPERT)
        .annotate(
            open_load=Count(
                "panel_memberships",
                filter=~Q(panel_memberships__panel__state=PanelState.CLOSED),
                distinct=True,
            )
        )
        .select_related("medcot_profile")
        .order_by("username")
        .distinct()
    )


def panel_auto_choose(*, item: Item, limit: int | None = None) -> tuple[list, str]:
    """The experts auto-assignment would seat on `item`, and why; raises a ReviewError saying
    why when there are not enough (nobody eligible, or everyone at the load limit)."""
    limit = max_open_panels() if limit is None else limit
    size = item.project.panel_size
    candidates = panel_candidates(item=item)
    free = [c for c in candidates if c.open_load < limit]
    if len(free) >= size:
        chosen = free[:size]
        return chosen, _explain(item, chosen)
    if len(candidates) < size:
        if item.specialty and not any(item.specialty in _specialties(c) for c in candidates):
            raise ReviewError(
                _(
                    "No expert of %(specialty)s, and only %(got)d eligible expert(s) in all; "
                    "the panel needs %(n)d."
                )
                % {"specialty": specialty_label(item.specialty), "got": len(candidates), "n": size}
            )
        raise ReviewError(
            _(
                "Only %(got)d eligible expert(s) (its first-pass reviewers and authors are "
                "left out); the panel needs %(n)d."
            )
            % {"got": len(candidates), "n": size}
        )
    busy = [c for c in candidates if c.open_load >= limit]
    raise ReviewError(
        _("Load limit: %(experts)s already sit on %(limit)d open panels.")
        % {"experts": ", ".join(_name(c) for c in busy), "limit": limit}
    )


def panels_assign_bulk(*, items: list[Item], actor, experts: list | None = None) -> BulkResult:
    """Seat a panel on each item: the given `experts` on every item, or (without them) the
    experts auto-assignment chooses per item, explained. Items not waiting for a panel, or
    without enough eligible experts, are reported, not assigned."""
    require_role(actor, ADMIN)
    if len(items) > BULK_MAX:
        raise ReviewError(
            _("Assign at most %(n)d items at once; narrow the filter.") % {"n": BULK_MAX}
        )
    if experts is not None:
        if not experts:
            raise ReviewError(_("Choose the experts, or assign automatically."))
        for expert in experts:
            if not has_role(expert, EXPERT):
                raise ReviewError(_("%(who)s is not an expert.") % {"who": expert.get_username()})
    result = BulkResult()
    for item in items:
        try:
            if item.status != Status.PANEL:
                raise ReviewError(_("Not waiting for a panel any more."))
            if experts is None:
                chosen, why = panel_auto_choose(item=item)
                panel_assign(item=item, experts=chosen, actor=actor, auto=True)
            else:
                chosen = experts
                panel_assign(item=item, experts=chosen, actor=actor)
                why = _("Chosen by %(admin)s.") % {"admin": _name(actor)}
        except ReviewError as exc:
            result.not_assigned.append(NotAssigned(item=item, why=" ".join(exc.messages)))
        else:
            result.assigned.append(Assigned(item=item, experts=list(chosen), why=why))
    return result


def items_specialty_set(*, items: list[Item], specialty: str, actor) -> int:
    """Set the specialty of many items (what panel assignment and queues match on), each
    change written to the item's event log. Returns how many items changed."""
    require_role(actor, ADMIN)
    specialty = specialty.strip()
    if len(specialty) > Item._meta.get_field("specialty").max_length:
        raise ReviewError(_("A specialty is at most 100 characters."))
    if len(items) > BULK_MAX:
        raise ReviewError(
            _("Change at most %(n)d items at once; narrow the filter.") % {"n": BULK_MAX}
        )
    changed = 0
    with transaction.atomic():
        locked = (
            Item.objects.select_for_update().filter(pk__in=[i.pk for i in items]).order_by("pk")
        )
        for item in locked:
            if item.specialty == specialty:
                continue
            Event.objects.create(
                project_id=item.project_id,
                item_id=item.pk,
                actor=actor_or_none(actor),
                kind="specialty_set",
                data={"from": item.specialty, "to": specialty},
            )
            changed += 1
        Item.objects.filter(pk__in=[i.pk for i in items]).exclude(specialty=specialty).update(
            specialty=specialty
        )
    return changed
