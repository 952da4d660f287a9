"""The item lifecycle: statuses, the allowed moves, and the one function that makes them.

Nothing else assigns `Item.status`. A move is a conditional UPDATE (`WHERE status = <from>`),
so two processes racing to move the same item cannot both succeed, and every move writes an
`Event` row with who, when, from, to and why in the same transaction.

    imported → generating → generated → first_review → reanswering → consensus → approved
        reanswering → panel → panel_review → consensus
    first_review / panel_review / consensus → discarded
    generating / reanswering → error → (retry) generating / reanswering
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from medcot.models import Item


class Status(models.TextChoices):
    IMPORTED = "imported", _("Imported")
    GENERATING = "generating", _("Generating")
    GENERATED = "generated", _("Generated")
    FIRST_REVIEW = "first_review", _("First-pass review")
    REANSWERING = "reanswering", _("Re-answering")
    PANEL = "panel", _("Awaiting panel")
    PANEL_REVIEW = "panel_review", _("Panel review")
    CONSENSUS = "consensus", _("Consensus")
    APPROVED = "approved", _("Approved")
    DISCARDED = "discarded", _("Discarded")
    ERROR = "error", _("Error")


S = Status

ALLOWED: dict[Status, frozenset[Status]] = {
    # An imported item that already carries a CoT may skip generation.
    S.IMPORTED: frozenset({S.GENERATING, S.GENERATED}),
    S.GENERATING: frozenset({S.GENERATED, S.ERROR}),
    S.GENERATED: frozenset({S.FIRST_REVIEW}),
    S.FIRST_REVIEW: frozenset({S.REANSWERING, S.DISCARDED}),
    S.REANSWERING: frozenset({S.CONSENSUS, S.PANEL, S.ERROR}),
    S.PANEL: frozenset({S.PANEL_REVIEW}),
    S.PANEL_REVIEW: frozenset({S.CONSENSUS, S.DISCARDED}),
    # Disagreement at consensus sends the item back to its panel for another round.
    S.CONSENSUS: frozenset({S.APPROVED, S.DISCARDED, S.PANEL_REVIEW}),
    S.APPROVED: frozenset(),
    S.DISCARDED: frozenset(),
    # The retry action: back to the stage whose LLM call failed.
    S.ERROR: frozenset({S.GENERATING, S.REANSWERING}),
}

# The pipeline's stages as people speak of them (DESIGN.md), each a group of statuses; used to
# filter items by stage in the API and the dashboards.
STAGES: dict[str, tuple[Status, ...]] = {
    "generation": (S.IMPORTED, S.GENERATING, S.GENERATED),
    "first_pass": (S.FIRST_REVIEW,),
    "reanswer": (S.REANSWERING,),
    "panel": (S.PANEL, S.PANEL_REVIEW),
    "consensus": (S.CONSENSUS,),
    "done": (S.APPROVED, S.DISCARDED),
    "error": (S.ERROR,),
}

# Statuses an item may be created in: seeds arrive imported, synthesized siblings arrive with
# their own key and CoT from the model.
INITIAL: frozenset[Status] = frozenset({S.IMPORTED, S.GENERATED})
TERMINAL: frozenset[Status] = frozenset(s for s, targets in ALLOWED.items() if not targets)


class IllegalTransition(Exception):
    """The move is not in the table."""


class StaleStatus(Exception):
    """The item is no longer in the status the caller read: someone else moved it first."""


def can_transition(from_status: str, to_status: str) -> bool:
    return Status(to_status) in ALLOWED[Status(from_status)]


def check_transition(from_status: str, to_status: str) -> None:
    if not can_transition(from_status, to_status):
        raise IllegalTransition(
            f"An item cannot move from {Status(from_status).label} to {Status(to_status).label}"
        )


def transition(
    item: Item,
    to: Status | str,
    *,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> Item:
    """Move `item` from its current status to `to`, recording the event.

    Raises IllegalTransition for a move outside the table and StaleStatus when the row's
    status in the database is no longer `item.status`. Updates `item` in place.
    """
    from medcot.models import Event, Item

    from_status = Status(item.status)
    to_status = Status(to)
    check_transition(from_status, to_status)
    now = timezone.now()
    reason_text = reason if to_status in {S.ERROR, S.DISCARDED} else ""
    # No savepoint inside a caller's transaction (two round trips saved on every move): a
    # stale status writes nothing and is raised after the block, so a caller that expects it
    # can carry on; a database error aborts the caller's transaction either way.
    with transaction.atomic(savepoint=False):
        changed = Item.objects.filter(pk=item.pk, status=from_status).update(
            status=to_status, status_changed_at=now, status_reason=reason_text
        )
        if changed == 1:
            Event.objects.create(
                project_id=item.project_id,
                item_id=item.pk,
                actor=actor if actor is not None and actor.is_authenticated else None,
                kind="transition",
                from_status=from_status,
                to_status=to_status,
                reason=reason,
                data=data or {},
            )
    if changed != 1:
        raise StaleStatus(f"Item {item.pk} is no longer {from_status.label}")
    item.status = to_status
    item.status_changed_at = now
    item.status_reason = reason_text
    return item


def transition_many(
    item_ids: Iterable[int],
    from_status: Status | str,
    to: Status | str,
    *,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> list[int]:
    """Move every listed item that is still in `from_status`; return the ids actually moved.

    Items that have already moved elsewhere are left alone, which makes batch starts safe to
    repeat. One UPDATE and one bulk INSERT of events, for runs over tens of thousands of items.
    """
    from medcot.models import Event, Item

    from_status = Status(from_status)
    to_status = Status(to)
    check_transition(from_status, to_status)
    ids = list(item_ids)
    now = timezone.now()
    moved: list[int] = []
    # No savepoint inside a caller's transaction: nothing here is meant to be caught and
    # carried on from, and a database error aborts the caller's transaction either way.
    with transaction.atomic(savepoint=False):
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            rows = list(
                Item.objects.select_for_update()
                .filter(pk__in=chunk, status=from_status)
                .values_list("pk", "project_id")
            )
            if not rows:
                continue
            Item.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                status=to_status, status_changed_at=now, status_reason=""
            )
            Event.objects.bulk_create(
                [
                    Event(
                        project_id=project_id,
                        item_id=pk,
                        actor=actor if actor is not None and actor.is_authenticated else None,
                        kind="transition",
                        from_status=from_status,
                        to_status=to_status,
                        reason=reason,
                    )
                    for pk, project_id in rows
                ],
                batch_size=2000,
            )
            moved.extend(pk for pk, _ in rows)
    return moved
