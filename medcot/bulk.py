"""Fast inserts: bulk ones for imports at the paper's scale, single rows for the LLM workers.

On PostgreSQL rows go in through COPY with ids taken from the tables' sequences first, so items,
their first versions and their events can reference each other in one pass (Django creates
foreign keys DEFERRABLE INITIALLY DEFERRED, checked at commit). Elsewhere (SQLite on a laptop)
the same rows go through bulk_create.

`insert_row` writes one row with one statement whose text is built once per model and set of
columns: no model instance, no query compilation. The LLM workers write a few rows for every
model call, and on two cores the ORM's per-statement work was a large share of a call's CPU.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json
import uuid
from collections.abc import Sequence

from django.db import connection, models
from django.utils import timezone


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def ids_in(ids: Sequence[int]) -> str:
    """SQL for "is one of these ids", to follow a column name: `= ANY(%s)` on PostgreSQL (one
    array parameter, so the statement's text is the same whatever the count, and psycopg,
    which caches its parse of a statement only up to 50 parameters, parses it once), a
    placeholder per id elsewhere. Pass `ids_params(ids)` in its place."""
    if is_postgres():
        return "= ANY(%s)"
    return f"IN ({', '.join(['%s'] * len(ids))})"


def ids_params(ids: Sequence[int]) -> list:
    """The parameters for `ids_in(ids)`."""
    return [list(ids)] if is_postgres() else list(ids)


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve `count` primary keys from the table's sequence (PostgreSQL only)."""
    return allocate_ids_many([model], count)[0]


def allocate_ids_many(models_: Sequence[type[models.Model]], count: int) -> list[list[int]]:
    """Reserve `count` primary keys from each table's sequence, in one query (PostgreSQL
    only): for rows of several tables that reference each other."""
    if count == 0:
        return [[] for _ in models_]
    sequences = ", ".join(["nextval(pg_get_serial_sequence(%s, %s))"] * len(models_))
    params = [x for model in models_ for x in (model._meta.db_table, model._meta.pk.column)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sequences} FROM generate_series(1, %s)",  # noqa: S608 (placeholders)
            [*params, count],
        )
        rows = cursor.fetchall()
    return [list(column) for column in zip(*rows, strict=True)]


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


def _complete(model: type[models.Model], rows: Sequence[dict], now) -> list[dict]:
    """Rows with every concrete field (but an absent primary key): defaults for the fields
    left out, the current time for auto timestamps, as `save()` would fill them in."""
    with_pk = model._meta.pk.attname in rows[0]
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    complete = []
    for row in rows:
        full = {}
        for field in fields:
            name = field.attname
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                full[name] = row.get(name) or now
            elif name in row:
                full[name] = row[name]
            else:
                full[name] = field.get_default()
        complete.append(full)
    return complete


# Up to this many rows, `insert_dicts` sends them as one JSON parameter of one INSERT: one
# round trip, where COPY takes two (start, then data and end) plus a message per row. Beyond
# it (run starts over tens of thousands of items) COPY's streaming wins.
JSON_INSERT_MAX_ROWS = 1000


def _json_value(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"Cannot send {type(value).__name__} as JSON")


@functools.cache
def _json_insert_statement(model: type[models.Model], names: tuple[str, ...]) -> str:
    """INSERT … SELECT from a JSON array of rows, keyed by column, typed by the table's own
    row type (`jsonb_populate_recordset`), so one text serves any number of rows."""
    quote = connection.ops.quote_name
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    columns = ", ".join(quote(by_attname[name].column) for name in names)
    table = quote(model._meta.db_table)
    return (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608 (names from the model)
        f"SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    )


def insert_dicts(model: type[models.Model], rows: Sequence[dict]) -> None:
    """Insert rows given as dicts keyed by field attname, with their ids (from `allocate_ids`)
    or none at all: on PostgreSQL one INSERT of a JSON array for a few rows and COPY for many,
    bulk_create elsewhere. No model instances are built on PostgreSQL, which is most of the
    cost of writing a family of ten."""
    insert_dicts_together([(model, rows)])


def insert_dicts_together(batches: Sequence[tuple[type[models.Model], Sequence[dict]]]) -> None:
    """`insert_dicts` for rows of several tables; on PostgreSQL, when they are few, in one
    statement (a data-modifying CTE per table; the foreign keys between them are checked at
    commit), so a family of ten and all that goes with it costs one round trip."""
    now = timezone.now()
    batches = [(model, _complete(model, rows, now)) for model, rows in batches if rows]
    if not batches:
        return
    if not is_postgres():
        for model, complete in batches:
            model.objects.bulk_create([model(**row) for row in complete])
        return
    if sum(len(complete) for _, complete in batches) > JSON_INSERT_MAX_ROWS:
        for model, complete in batches:
            copy_rows(model, complete)
        return
    statements, params = [], []
    for model, complete in batches:
        sql, payload = _json_insert(model, complete)
        statements.append(sql)
        params.append(payload)
    *first, last = statements
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(first))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {last}" if ctes else last, params)


def _json_insert(model: type[models.Model], complete: Sequence[dict]) -> tuple[str, str]:
    """The statement and its one parameter for `complete` rows (see `_complete`)."""
    by_attname = {f.attname: f.column for f in model._meta.concrete_fields}
    names = tuple(complete[0])
    payload = json.dumps(
        [{by_attname[name]: row[name] for name in names} for row in complete],
        default=_json_value,
    )
    return _json_insert_statement(model, names), payload


def insert_objects(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert unsaved instances: COPY on PostgreSQL (each instance carries its id, from
    `allocate_ids`, or none at all), bulk_create elsewhere (which sets the ids)."""
    if not objs:
        return
    if not is_postgres():
        model.objects.bulk_create(objs)
        return
    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and objs[0].pk is None)]
    copy_rows(model, [_row(obj, fields, now) for obj in objs])


@functools.cache
def _statement(
    model: type[models.Model],
    source: str,
    refs: tuple[tuple[str, str], ...],
    conflict: tuple[str, ...],
    returning: bool,
) -> tuple[str, tuple[models.Field, ...]]:
    """The SQL of a one-row INSERT, and the fields whose values it takes as parameters."""
    quote = connection.ops.quote_name
    expressions = dict(refs)
    columns = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [expressions.get(f.attname, "%s") for f in columns]
    # Only names from the models and from code, and %s placeholders, go into the text.
    names = ", ".join(quote(f.column) for f in columns)
    head = f"INSERT INTO {quote(model._meta.db_table)} ({names})"
    if source:
        sql = f"{head} SELECT {', '.join(values)} FROM {source}"  # noqa: S608
    else:
        sql = f"{head} VALUES ({', '.join(values)})"
    if conflict:
        targets = ", ".join(quote(model._meta.get_field(name).column) for name in conflict)
        sql += f" ON CONFLICT ({targets}) DO NOTHING"
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql, tuple(f for f in columns if f.attname not in expressions)


def insert_statement(
    model: type[models.Model],
    values: dict,
    *,
    source: str = "",
    refs: dict[str, str] | None = None,
    on_conflict_do_nothing: tuple[str, ...] = (),
    returning: bool = True,
) -> tuple[str, list]:
    """One row's INSERT as (sql, params), built once per model and shape: no model instance,
    no query compilation. `values` is keyed by field attname (`item_id`, not `item`); a field
    left out takes its default and `auto_now(_add)` fields take the current time, as `save()`
    would. With `source` (say, a CTE's name) the row is `SELECT`ed from it, and `refs` maps
    fields to SQL expressions over it (`{"llm_call_id": "c.id"}`): on PostgreSQL several
    dependent writes then go in one statement. With `on_conflict_do_nothing` naming the fields
    of a unique constraint, a row that would break it is skipped.

    Nothing runs `save()` or sends signals: only for tables with no such behaviour (the
    append-only logs and job rows), whose guards are about updates, not inserts."""
    sql, fields = _statement(
        model,
        source,
        tuple(sorted((refs or {}).items())),
        tuple(on_conflict_do_nothing),
        returning,
    )
    now = timezone.now()
    params = []
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = values.get(field.attname) or now
        elif field.attname in values:
            value = values[field.attname]
        else:
            value = field.get_default()
        params.append(field.get_db_prep_save(value, connection))
    return sql, params


def insert_row(model: type[models.Model], values: dict, **options) -> int | None:
    """Insert one row (see `insert_statement`) and return its id, or None when there is no
    RETURNING or a conflict skipped the row."""
    sql, params = insert_statement(model, values, **options)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not options.get("returning", True):
            return None
        row = cursor.fetchone()
    return row[0] if row else None
