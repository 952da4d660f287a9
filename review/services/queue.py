"""Queue claims with leases.

A claim is one short transaction: lock the first eligible item row with
`SELECT … FOR UPDATE SKIP LOCKED` in a fixed order (the person's specialties first, then oldest
id), re-check its lease with a fresh statement, and write the lease. Two people claiming at the
same instant lock different rows, and the lease row (one per item and stage) is only ever written
while its item row is locked, so an item is never handed to two people for the same slot.
SQLite ignores the row lock; it serialises writers instead, which gives the same result.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from medcot.models import Item, ItemVersion
from medcot.roles import EXPERT, REVIEWER, has_role
from review.models import ConsensusVote, FirstPassReview, FirstPassState, Lease, Stage
from review.quality.controls import control_probe
from review.quality.models import ControlItem
from review.services.common import ReviewError, lease_seconds

# A person holds at most this many leases per stage: the item on screen and the next one,
# claimed ahead so the switch after a submission needs no claim.
MAX_HELD = 2


def _specialties(user) -> list[str]:
    profile = getattr(user, "medcot_profile", None)
    return list(profile.specialties or []) if profile is not None else []


def queue_check_role(*, user, stage: str) -> None:
    allowed = (REVIEWER, EXPERT) if stage == Stage.FIRST_REVIEW else (EXPERT,)
    if not has_role(user, *allowed):
        raise ReviewError(_("You do not have a role that works this queue."))


def _probe_sql(
    *,
    user_id: int,
    now_db,
    stage: str,
    project_id: int | None,
    specialties: list[str],
    skipped: set[int],
) -> tuple[str, list]:
    """The claim query, written out by hand: it runs on every "next item" and the ORM's
    compilation of the same query cost more than the database's execution of it.

    Eligible: in the stage; no live lease (anyone's, the caller's own included); current
    version not written by the caller; not already reviewed (first pass) or voted on
    (consensus) by the caller, and no first-pass verdict still held in its undo window.
    Long because it builds one statement whose placeholders and parameters must stay in the
    same order: each condition appends its clause and its values side by side.
    """
    item = Item._meta.db_table
    params: list = [stage]
    where = ["i.status = %s"]
    if project_id is not None:
        where.append("i.project_id = %s")
        params.append(project_id)
    if specialties:
        where.append(f"i.specialty IN ({', '.join(['%s'] * len(specialties))})")
        params.extend(specialties)
    if skipped:
        where.append(f"i.id NOT IN ({', '.join(['%s'] * len(skipped))})")
        params.extend(sorted(skipped))
    # Only table names (from model metadata) are interpolated; every value is a parameter.
    lease_t = Lease._meta.db_table
    where.append(
        f"NOT EXISTS (SELECT 1 FROM {lease_t} l WHERE l.item_id = i.id "  # noqa: S608
        "AND l.stage = %s AND l.expires_at > %s)"
    )
    params.extend([stage, now_db])
    where.append("(v.author_id IS NULL OR v.author_id <> %s)")
    params.append(user_id)
    # Control items are handed out by their own probe (review/quality/controls.py).
    control_t = ControlItem._meta.db_table
    where.append(f"NOT EXISTS (SELECT 1 FROM {control_t} q WHERE q.item_id = i.id)")  # noqa: S608
    if stage == Stage.FIRST_REVIEW:
        review_t = FirstPassReview._meta.db_table
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {review_t} r WHERE r.item_id = i.id "  # noqa: S608
            "AND ((r.reviewer_id = %s AND r.state <> %s) OR r.state = %s))"
        )
        params.extend([user_id, FirstPassState.UNDONE, FirstPassState.HELD])
    else:
        vote_t = ConsensusVote._meta.db_table
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {vote_t} c WHERE c.item_id = i.id "  # noqa: S608
            "AND c.expert_id = %s)"
        )
        params.append(user_id)
    # Worst judge risk first when the project uses the judge for it and it is trusted.
    from review.judge.services import risk_order_sql

    risk_term, risk_params = (
        risk_order_sql(project_id=project_id) if stage == Stage.FIRST_REVIEW else ("", [])
    )
    params.extend(risk_params)
    sql = (
        f"SELECT i.* FROM {item} i "  # noqa: S608 — only table names are interpolated
        f"LEFT JOIN {ItemVersion._meta.db_table} v ON v.id = i.current_version_id "
        f"WHERE {' AND '.join(where)} ORDER BY {risk_term}i.id LIMIT 1"
    )
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF i SKIP LOCKED"
    return sql, params


def _probe(*, user, now: datetime, **kwargs) -> Item | None:
    sql, params = _probe_sql(
        user_id=user.pk, now_db=connection.ops.adapt_datetimefield_value(now), **kwargs
    )
    return next(iter(Item.objects.raw(sql, params)), None)


def queue_held(*, user, stage: str, now: datetime | None = None) -> list[Item]:
    """The items `user` holds a live lease on at `stage`, oldest claim first."""
    now = now or timezone.now()
    leases = Lease.objects.filter(holder=user, stage=stage, expires_at__gt=now, item__status=stage)
    if stage == Stage.FIRST_REVIEW:
        # A submitted item keeps its lease through the undo window but is no longer on screen.
        held = FirstPassReview.objects.filter(item=OuterRef("item_id"), state=FirstPassState.HELD)
        leases = leases.exclude(Exists(held))
    ids = list(leases.order_by("claimed_at", "id").values_list("item_id", flat=True))
    items = Item.objects.in_bulk(ids)
    return [items[pk] for pk in ids if pk in items]


def _lease_take(*, item_id: int, stage: str, user, now: datetime) -> bool:
    """Write the lease unless someone else holds a live one: one statement, both databases.

    The caller holds the item row lock, so this never races another claim of the same item;
    the conditional upsert still refuses a live lease of someone else, because the item row
    may have been released by a claimer who committed after our eligibility snapshot.
    """
    expires = now + timedelta(seconds=lease_seconds())
    table = Lease._meta.db_table
    at = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (item_id, stage, holder_id, claimed_at, expires_at) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (item_id, stage) DO UPDATE SET holder_id = excluded.holder_id, "
            "claimed_at = excluded.claimed_at, expires_at = excluded.expires_at "
            f"WHERE {table}.expires_at <= %s OR {table}.holder_id = excluded.holder_id "
            "RETURNING holder_id",
            [item_id, stage, user.pk, at(now), at(expires), at(now)],
        )
        return cursor.fetchone() is not None


def queue_claim(
    *,
    user,
    stage: str,
    project_id: int | None = None,
    exclude_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> Item | None:
    """Lease one more item at `stage` to `user` and return it, or None when the queue is empty
    for them. Items the user already holds are not handed out again (see `queue_next`)."""
    queue_check_role(user=user, stage=stage)
    now = now or timezone.now()
    specialties = _specialties(user)
    skipped = set(exclude_ids)
    for _attempt in range(8):
        with transaction.atomic():
            # Every claim asks for a control and for a real item, so a claim takes the same
            # time whether it serves a control or not (review/quality/controls.py).
            control = control_probe(
                user=user, now=now, stage=stage, project_id=project_id, skipped=skipped
            )
            item = None
            # Two simple ordered probes instead of one ORDER BY CASE: each walks an index in id
            # order and stops at the first free row, which keeps the claim fast on a deep queue.
            if specialties:
                item = _probe(
                    user=user,
                    now=now,
                    stage=stage,
                    project_id=project_id,
                    specialties=specialties,
                    skipped=skipped,
                )
            if item is None:
                item = _probe(
                    user=user,
                    now=now,
                    stage=stage,
                    project_id=project_id,
                    specialties=[],
                    skipped=skipped,
                )
            if control is not None:
                item = control
            if item is None:
                return None
            if _lease_take(item_id=item.pk, stage=stage, user=user, now=now):
                return item
            skipped.add(item.pk)
    return None


def queue_next(
    *, user, stage: str, project_id: int | None = None, exclude_ids: Iterable[int] = ()
) -> tuple[Item | None, Item | None]:
    """The item to show now and the one after it, both leased to `user`.

    Keeps the person's current lease if they have one (a reload shows the same item) and
    claims ahead so that the next item is already theirs when they submit this one.
    """
    now = timezone.now()
    excluded = set(exclude_ids)
    held = [item for item in queue_held(user=user, stage=stage, now=now) if item.pk not in excluded]
    if project_id is not None:
        held = [item for item in held if item.project_id == project_id]
    while len(held) < MAX_HELD:
        item = queue_claim(
            user=user, stage=stage, project_id=project_id, exclude_ids=excluded, now=now
        )
        if item is None:
            break
        held.append(item)
        excluded.add(item.pk)
    current = held[0] if held else None
    following = held[1] if len(held) > 1 else None
    return current, following


def lease_release(*, user, item_id: int, stage: str) -> bool:
    """Give an item back to the queue (skip). Returns whether the user held it."""
    return Lease.objects.filter(item_id=item_id, stage=stage, holder=user).delete()[0] > 0


def lease_holds(*, user, item_id: int, stage: str, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return Lease.objects.filter(
        item_id=item_id, stage=stage, holder=user, expires_at__gt=now
    ).exists()


def lease_held_by_other(*, user, item_id: int, stage: str, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        Lease.objects.filter(item_id=item_id, stage=stage, expires_at__gt=now)
        .exclude(holder=user)
        .exists()
    )


def leases_expired_purge(*, now: datetime | None = None) -> int:
    """Housekeeping: drop lease rows that no longer count (a claim takes them over anyway)."""
    now = now or timezone.now()
    return Lease.objects.filter(expires_at__lte=now).delete()[0]
