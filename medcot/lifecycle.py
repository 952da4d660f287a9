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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
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
    # Back to imported when the run drafting its CoT is cancelled, so a later run picks it up.
    S.GENERATING: frozenset({S.GENERATED, S.ERROR, S.IMPORTED}),
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


@dataclass
class ItemRef:
    """An item as the lifecycle needs it (its id, project and status), for a writer that read
    those with its own SQL (generation's workers): what it passes to `transition` and
    `item_version_create` instead of a made-up model instance. Updated in place like an item."""

    pk: int
    project_id: int
    status: str


def creation_event_values(
    *,
    project_id: int,
    item_id: int,
    status: Status | str,
    reason: str = "",
    data: dict[str, Any] | None = None,
    actor_id: int | None = None,
    now=None,
) -> dict:
    """The event row that records an item's creation in its first status (one of `INITIAL`),
    for writers that insert items in bulk (generation's families). The one builder, so every
    creation reads the same in the history."""
    first = Status(status)
    if first not in INITIAL:
        raise IllegalTransition(f"An item cannot be created as {first.label}")
    return {
        "project_id": project_id,
        "item_id": item_id,
        "actor_id": actor_id,
        "kind": "created",
        "from_status": "",
        "to_status": first.value,
        "reason": reason,
        "data": data or {},
        "created_at": now or timezone.now(),
    }


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


_MOVE_SQL = (
    "UPDATE medcot_item SET status = %s, status_changed_at = %s, status_reason = %s "
    "WHERE id = %s AND status = %s"
)


def _event_values(actor_id, from_status: Status, to_status: Status, reason: str) -> dict:
    """The fields of a move's `transition` event that do not depend on the item or on how it
    is written."""
    return {
        "actor_id": actor_id,
        "kind": "transition",
        "from_status": from_status.value,
        "to_status": to_status.value,
        "reason": reason,
    }


def _move_portable(
    item: Item | ItemRef,
    from_status: Status,
    to_status: Status,
    *,
    actor_id: int | None,
    reason: str,
    data: dict[str, Any] | None,
    now,
) -> int:
    """`transition`'s write on databases other than PostgreSQL: the conditional UPDATE, then
    the event if it moved. Returns the rows moved (0 or 1)."""
    from medcot.bulk import insert_row
    from medcot.models import Event

    reason_text = reason if to_status in {S.ERROR, S.DISCARDED} else ""
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            _MOVE_SQL,
            [
                to_status.value,
                connection.ops.adapt_datetimefield_value(now),
                reason_text,
                item.pk,
                from_status.value,
            ],
        )
        changed = cursor.rowcount
        if changed == 1:
            event = _event_values(actor_id, from_status, to_status, reason)
            insert_row(
                Event,
                {
                    **event,
                    "project_id": item.project_id,
                    "item_id": item.pk,
                    "data": data or {},
                    "created_at": now,
                },
                returning=False,
            )
    return changed


def transition(
    item: Item | ItemRef,
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
    from_status = Status(item.status)
    to_status = Status(to)
    check_transition(from_status, to_status)
    now = timezone.now()
    reason_text = reason if to_status in {S.ERROR, S.DISCARDED} else ""
    # No savepoint inside a caller's transaction (two round trips saved on every move): a
    # stale status writes nothing and is raised after the write, so a caller that expects it
    # can carry on; a database error aborts the caller's transaction either way. No query
    # compilation, and on PostgreSQL one statement: the LLM workers move thousands of items a
    # minute.
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    if connection.vendor == "postgresql":
        # One statement, atomic on its own: the move and its event, or neither.
        ctes, params = transition_ctes(
            item_id=item.pk,
            project_id=item.project_id,
            from_status=from_status,
            to=to_status,
            actor_id=actor_id,
            reason=reason,
            data=data,
            now=now,
        )
        with connection.cursor() as cursor:
            cursor.execute(f"WITH {ctes} SELECT count(*) FROM moved", params)  # noqa: S608 (from code)
            changed = cursor.fetchone()[0]
    else:
        changed = _move_portable(
            item,
            from_status,
            to_status,
            actor_id=actor_id,
            reason=reason,
            data=data,
            now=now,
        )
    if changed != 1:
        raise StaleStatus(f"Item {item.pk} is no longer {from_status.label}")
    item.status = to_status
    item.status_changed_at = now
    item.status_reason = reason_text
    return item


def transition_ctes(
    *,
    item_id: int,
    project_id: int,
    from_status: Status | str,
    to: Status | str,
    actor_id: int | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    name: str = "moved",
    now=None,
) -> tuple[str, list]:
    """`transition` as two data-modifying CTEs for PostgreSQL, to be written in one statement
    with other writes: `{name}` (the item's id, if it was still in `from_status` and moved)
    and `{name}_event` (its event). The same rows `transition` writes, for the LLM workers'
    hot path, where one statement instead of four saves most of a move's cost. Compose as
    `WITH <these>, <yours> SELECT …`; `SELECT count(*) FROM {name}` tells whether it moved."""
    from medcot.bulk import insert_statement
    from medcot.models import Event

    from_status = Status(from_status)
    to_status = Status(to)
    check_transition(from_status, to_status)
    now = now or timezone.now()
    event_sql, event_params = insert_statement(
        Event,
        {
            **_event_values(actor_id, from_status, to_status, reason),
            "project_id": project_id,
            "data": data or {},
            "created_at": now,
        },
        source=name,
        refs={"item_id": f"{name}.id"},
        returning=False,
    )
    sql = f"{name} AS ({_MOVE_SQL} RETURNING id), {name}_event AS ({event_sql})"
    params = [
        to_status.value,
        connection.ops.adapt_datetimefield_value(now),
        reason if to_status in {S.ERROR, S.DISCARDED} else "",
        item_id,
        from_status.value,
        *event_params,
    ]
    return sql, params


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
    Long because the chunked loop's two dialect paths share the statement, its parameters and
    the event template; split apart, each would need all of them passed in.
    """
    from medcot.bulk import ids_in, ids_params, insert_dicts, insert_statement
    from medcot.models import Event

    from_status = Status(from_status)
    to_status = Status(to)
    check_transition(from_status, to_status)
    ids = list(item_ids)
    now = timezone.now()
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    moved: list[int] = []
    move_sql = (
        "UPDATE medcot_item SET status = %s, status_changed_at = %s, status_reason = '' "
        "WHERE id {} AND status = %s RETURNING id, project_id"
    )
    event = {
        **_event_values(actor_id, from_status, to_status, reason),
        "data": {},
        "created_at": now,
    }
    # No savepoint inside a caller's transaction: nothing here is meant to be caught and
    # carried on from, and a database error aborts the caller's transaction either way. The
    # conditional UPDATE … RETURNING locks and moves in one statement (a row another
    # transaction moves first is re-checked against `status = from` and left out); on
    # PostgreSQL the events are written by the same statement.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            params = [
                to_status.value,
                connection.ops.adapt_datetimefield_value(now),
                *ids_params(chunk),
                from_status.value,
            ]
            if connection.vendor == "postgresql":
                event_sql, event_params = insert_statement(
                    Event,
                    event,
                    source="moved",
                    refs={"item_id": "moved.id", "project_id": "moved.project_id"},
                    returning=False,
                )
                cursor.execute(
                    f"WITH moved AS ({move_sql.format(ids_in(chunk))}), "  # noqa: S608 (from code)
                    f"moved_event AS ({event_sql}) SELECT id FROM moved ORDER BY id",
                    [*params, *event_params],
                )
                moved.extend(pk for (pk,) in cursor.fetchall())
                continue
            cursor.execute(move_sql.format(ids_in(chunk)), params)
            rows = sorted(cursor.fetchall())
            insert_dicts(
                Event,
                [{**event, "project_id": project_id, "item_id": pk} for pk, project_id in rows],
            )
            moved.extend(pk for pk, _ in rows)
    return moved
