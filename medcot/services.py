"""Writes on the core domain. Views, commands and tasks call these; nothing else writes."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from medcot.bulk import insert_row, insert_statement
from medcot.lifecycle import ItemRef
from medcot.models import OPTION_LABELS, Event, Item, ItemVersion, Project, RevisionStatus


def project_create(*, name: str, actor=None, slug: str = "", **settings) -> Project:
    slug = slug or slugify(name)[:80] or "project"
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slug,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            **settings,
        )
        Event.objects.create(
            project=project, actor=project.created_by, kind="project_created", data=settings
        )
    return project


# The item's project, its current version's content and its highest version number, read
# while locking the item: the new version is number + 1, and nobody else can take it meanwhile.
_CURRENT_SQL = (
    "SELECT i.project_id, v.stem, "  # noqa: S608 (column names from code)
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + ", v.answer, v.cot, "
    "(SELECT max(number) FROM medcot_itemversion n WHERE n.item_id = i.id) "
    "FROM medcot_item i LEFT JOIN medcot_itemversion v ON v.id = i.current_version_id "
    "WHERE i.id = %s"
)


def _current_row_lock(cursor, *, item_pk: int) -> tuple:
    """Lock the item row and read its current content and highest version number."""
    lock = " FOR NO KEY UPDATE OF i" if connection.features.has_select_for_update_of else ""
    cursor.execute(_CURRENT_SQL + lock, [item_pk])
    row = cursor.fetchone()
    if row is None:
        raise Item.DoesNotExist(f"Item {item_pk} does not exist")
    return row


def _version_write(cursor, *, values: dict, project_id: int, marks_modified: bool) -> int:
    """Insert the version, point the item at it (marking it modified if asked) and log the
    event; returns the version's id. One statement on PostgreSQL, three elsewhere."""
    item_pk = values["item_id"]
    event = {
        "project_id": project_id,
        "item_id": item_pk,
        "actor_id": values["author_id"],
        "kind": "version_created",
        "reason": values["reason"],
        "data": {"number": values["number"], "author_kind": values["author_kind"]},
        "created_at": values["created_at"],
    }
    pointer = "current_version_id = {}"
    pointer_params: list = []
    if marks_modified:
        pointer += ", revision_status = %s"
        pointer_params = [RevisionStatus.MODIFIED.value]
    if connection.vendor == "postgresql":
        # The version, the item's pointer and the event in one statement.
        version_sql, version_params = insert_statement(ItemVersion, values)
        event_sql, event_params = insert_statement(Event, event, returning=False)
        cursor.execute(
            f"WITH v AS ({version_sql}), "  # noqa: S608 (names and placeholders from code)
            f"p AS (UPDATE medcot_item SET {pointer.format('(SELECT id FROM v)')} "
            "WHERE id = %s), "
            f"e AS ({event_sql}) SELECT id FROM v",
            [*version_params, *pointer_params, item_pk, *event_params],
        )
        return cursor.fetchone()[0]
    version_id = insert_row(ItemVersion, values)
    cursor.execute(
        f"UPDATE medcot_item SET {pointer.format('%s')} WHERE id = %s",  # noqa: S608
        [version_id, *pointer_params, item_pk],
    )
    insert_row(Event, event, returning=False)
    return version_id


def item_version_create(
    *,
    item: Item | ItemRef,
    author_kind: str,
    reason: str,
    author=None,
    stem: str | None = None,
    options: dict[str, str] | None = None,
    answer: str | None = None,
    cot: str | None = None,
    reasoning: str | None = None,
    provenance: dict | None = None,
    marks_modified: bool = False,
) -> ItemVersion:
    """Append a new content version built from the current one with the given changes.

    `marks_modified` records that a person (or a guided regeneration) changed the item after
    its first draft, which the release reports as "modified". Locks the item row so two edits
    cannot both become version N+1. Plain statements, no query compilation, and on PostgreSQL
    two of them (the locking read; the version, the item's pointer and the event): the LLM
    workers create a version for every seed they draft.
    """
    author = author if author is not None and author.is_authenticated else None
    # No savepoint inside a caller's transaction: any error here aborts it anyway.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        row = _current_row_lock(cursor, item_pk=item.pk)
        project_id, current_stem, *current_options = row[:7]
        current_answer, current_cot, highest = row[7:]
        has_current = current_stem is not None
        base_options = (
            {k: v for k, v in zip(OPTION_LABELS, current_options, strict=True) if v}
            if has_current
            else {}
        )
        new_options = options if options is not None else base_options
        values = {
            "item_id": item.pk,
            "number": (highest or 0) + 1,
            "stem": stem if stem is not None else (current_stem or ""),
            "answer": answer if answer is not None else (current_answer or ""),
            "cot": cot if cot is not None else (current_cot or ""),
            "reasoning": reasoning if reasoning is not None else "",
            "author_kind": author_kind,
            "author_id": author.pk if author is not None else None,
            "reason": reason,
            "provenance": provenance or {},
            "created_at": timezone.now(),
            **{f"option_{label.lower()}": new_options.get(label, "") for label in OPTION_LABELS},
        }
        version = ItemVersion(**values)
        version.pk = _version_write(
            cursor, values=values, project_id=project_id, marks_modified=marks_modified
        )
        version._state.adding = False
        version._state.db = connection.alias
    item.current_version = version
    if marks_modified:
        item.revision_status = RevisionStatus.MODIFIED
    return item.current_version
