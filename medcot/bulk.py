"""Fast bulk inserts for imports at the paper's scale.

On PostgreSQL rows go in through COPY with ids taken from the tables' sequences first, so items,
their first versions and their events can reference each other in one pass (Django creates
foreign keys DEFERRABLE INITIALLY DEFERRED, checked at commit). Elsewhere (SQLite on a laptop)
the same rows go through bulk_create.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection, models


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve `count` primary keys from the table's sequence (PostgreSQL only)."""
    if count == 0:
        return []
    table = model._meta.db_table
    column = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def copy_rows(model: type[models.Model], rows: Sequence[dict]) -> None:
    """Insert rows (dicts keyed by field attname, every concrete field present) with COPY."""
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if f.attname in rows[0]]
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    names = [f.attname for f in fields]
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([json.dumps(row[n]) if n in json_fields else row[n] for n in names])


def _row(obj: models.Model, fields, now) -> dict:
    """A model instance as a COPY row, with what `save()` would fill in: auto timestamps."""
    row = {}
    for field in fields:
        value = getattr(obj, field.attname)
        auto_add = getattr(field, "auto_now_add", False) and value is None
        if auto_add or getattr(field, "auto_now", False):
            value = now
        row[field.attname] = value
    return row


def insert_objects(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved instances: COPY on PostgreSQL (each instance carries its id, from
    `allocate_ids`, or none at all), bulk_create elsewhere (which sets the ids)."""
    if not objs:
        return
    if not is_postgres():
        model.objects.bulk_create(objs)
        return
    from django.utils import timezone

    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and objs[0].pk is None)]
    copy_rows(model, [_row(obj, fields, now) for obj in objs])
