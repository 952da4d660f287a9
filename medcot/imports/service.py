"""Seed import: one service behind the management command, the upload page and the worker.

All-or-nothing: a file with any bad record imports nothing, and the report names every bad line
and why. Records whose id already exists with the same content are left alone, so importing the
same file twice is a no-op; an existing id with different content is an error, never an
overwrite (content changes are new versions, made by people or the pipeline, not by imports).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from medcot.bulk import allocate_ids, copy_rows, is_postgres
from medcot.imports.formats import (
    FormatError,
    ImportOptions,
    LineError,
    content_fingerprint,
    parse_seed_file,
)
from medcot.lifecycle import Status
from medcot.models import (
    OPTION_LABELS,
    AuthorKind,
    Event,
    ImportBatch,
    Item,
    ItemKind,
    ItemVersion,
    Project,
    RevisionStatus,
)

BATCH_SIZE = 2000


@dataclass
class ImportResult:
    batch: ImportBatch
    errors: list[LineError]

    @property
    def ok(self) -> bool:
        return self.batch.state == ImportBatch.State.DONE


def import_batch_create(
    *,
    project: Project,
    data: bytes,
    file_name: str,
    options: ImportOptions,
    actor=None,
    keep_content: bool = True,
) -> ImportBatch:
    """Record an upload to be processed by a worker (`import_batch_process`)."""
    return ImportBatch.objects.create(
        project=project,
        file_name=file_name[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        format=options.format,
        options=_options_to_json(options),
        content=data if keep_content else None,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )


def import_batch_process(*, batch_id: int) -> ImportBatch:
    """Run a pending batch. Safe to call twice: a finished batch is returned unchanged."""
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch_id)
        if batch.is_finished:
            return batch
        batch.state = ImportBatch.State.RUNNING
        batch.save(update_fields=["state"])
    options = _options_from_json(batch.options, batch.file_name)
    data = bytes(batch.content or b"")
    _run(batch=batch, data=data, options=options)
    return batch


def seed_file_import(
    *, project: Project, data: bytes, file_name: str, options: ImportOptions, actor=None
) -> ImportResult:
    """Import a seed file now, in this process (the management command's path)."""
    batch = import_batch_create(
        project=project,
        data=data,
        file_name=file_name,
        options=options,
        actor=actor,
        keep_content=False,
    )
    errors = _run(batch=batch, data=data, options=options)
    return ImportResult(batch=batch, errors=errors)


def _run(*, batch: ImportBatch, data: bytes, options: ImportOptions) -> list[LineError]:
    started = time.perf_counter()
    options.file_name = options.file_name or batch.file_name
    try:
        parsed = parse_seed_file(data, options)
    except FormatError as exc:
        return _finish(
            batch, started, state=ImportBatch.State.REJECTED, errors=[LineError(0, str(exc))]
        )

    batch.format = parsed.format
    batch.records = len(parsed.records) + len({e.line for e in parsed.errors})
    errors = list(parsed.errors)
    errors.extend(_duplicate_ids(parsed.records))
    if errors:
        return _finish(batch, started, state=ImportBatch.State.REJECTED, errors=errors)
    if not parsed.records:
        return _finish(
            batch,
            started,
            state=ImportBatch.State.REJECTED,
            errors=[LineError(0, "the file holds no records")],
        )

    with transaction.atomic():
        # Lock the project row: two imports into one project run one after the other, so the
        # "already exists" check below cannot race with another import's inserts. NO KEY: a
        # plain FOR UPDATE would also hold up the foreign-key check of every row written into
        # the project meanwhile (the LLM workers' events and items) for the whole import.
        Project.objects.select_for_update(no_key=True).get(pk=batch.project_id)
        existing = (
            _existing_fingerprints(batch.project_id, [r.external_id for r in parsed.records])
            if Item.objects.filter(project_id=batch.project_id).exists()
            else {}
        )
        new_records = []
        for record in parsed.records:
            known = existing.get(record.external_id)
            if known is None:
                new_records.append(record)
            elif known != record.fingerprint():
                errors.append(
                    LineError(
                        record.line,
                        f"id {record.external_id!r} already exists in this project with different "
                        "content; give the changed question a new id",
                    )
                )
        if errors:
            transaction.set_rollback(True)
        else:
            _write(batch, new_records)
            batch.created_count = len(new_records)
            batch.unchanged_count = len(parsed.records) - len(new_records)
    if errors:
        return _finish(batch, started, state=ImportBatch.State.REJECTED, errors=errors)
    return _finish(batch, started, state=ImportBatch.State.DONE, errors=[])


def _finish(
    batch: ImportBatch, started: float, *, state: str, errors: list[LineError]
) -> list[LineError]:
    errors = sorted(errors, key=lambda e: (e.line, e.message))
    batch.state = state
    batch.errors = [e.as_dict() for e in errors]
    batch.error_count = len(errors)
    batch.duration_ms = int((time.perf_counter() - started) * 1000)
    batch.finished_at = timezone.now()
    # The upload is not needed once processed; the digest stays for provenance.
    batch.content = None
    batch.save()
    return errors


def _duplicate_ids(records) -> list[LineError]:
    first_line: dict[str, int] = {}
    errors = []
    for record in records:
        if record.external_id in first_line:
            errors.append(
                LineError(
                    record.line,
                    f"duplicate id {record.external_id!r} "
                    f"(first on line {first_line[record.external_id]})",
                )
            )
        else:
            first_line[record.external_id] = record.line
    return errors


def _existing_fingerprints(project_id: int, external_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    columns = ["stem", "option_a", "option_b", "option_c", "option_d", "option_e", "answer"]
    for start in range(0, len(external_ids), 5000):
        chunk = external_ids[start : start + 5000]
        rows = Item.objects.filter(project_id=project_id, external_id__in=chunk).values_list(
            "external_id", *[f"current_version__{c}" for c in columns]
        )
        for external_id, stem, a, b, c, d, e, answer in rows:
            options = {k: v for k, v in zip(OPTION_LABELS, (a, b, c, d, e), strict=True) if v}
            found[external_id] = (
                content_fingerprint(stem, options, answer) if stem is not None else ""
            )
    return found


def _write(batch: ImportBatch, records) -> None:
    """Insert items, their first versions and their creation events."""
    if not records:
        return
    if is_postgres():
        _write_copy(batch, records)
    else:
        _write_orm(batch, records)
    # One event for the whole import: each item's first version already names the file and line
    # it came from, and 36,210 identical "created" rows would tell the audit nothing more.
    Event.objects.create(
        project_id=batch.project_id,
        actor_id=batch.created_by_id,
        kind="seeds_imported",
        to_status=Status.IMPORTED,
        reason=f"imported from {batch.file_name}",
        data={"batch": batch.pk, "items": len(records), "sha256": batch.sha256},
    )


def _item_fields(batch: ImportBatch, r) -> dict:
    return {
        "project_id": batch.project_id,
        "kind": ItemKind.SEED,
        "external_id": r.external_id,
        "question_type": r.question_type,
        "specialty": r.specialty,
        "cognitive_level": r.cognitive_level,
        "difficulty": r.difficulty,
        "language": r.language,
        "source": r.source,
        "status": Status.IMPORTED,
        "import_batch_id": batch.pk,
    }


def _version_fields(batch: ImportBatch, r) -> dict:
    fields = {f"option_{label.lower()}": r.options.get(label, "") for label in OPTION_LABELS}
    fields.update(
        number=1,
        stem=r.stem,
        answer=r.answer,
        cot=r.cot,
        author_kind=AuthorKind.IMPORT,
        author_id=batch.created_by_id,
        reason=f"imported from {batch.file_name} line {r.line}",
    )
    return fields


def _write_copy(batch: ImportBatch, records) -> None:
    now = timezone.now()
    item_ids = allocate_ids(Item, len(records))
    version_ids = allocate_ids(ItemVersion, len(records))
    copy_rows(
        Item,
        [
            {
                "id": item_id,
                "family_id": item_id,
                "current_version_id": version_id,
                "status_changed_at": now,
                "revision_status": RevisionStatus.UNREVISED,
                "status_reason": "",
                "created_at": now,
                **_item_fields(batch, r),
            }
            for item_id, version_id, r in zip(item_ids, version_ids, records, strict=True)
        ],
    )
    copy_rows(
        ItemVersion,
        [
            {
                "id": version_id,
                "item_id": item_id,
                "reasoning": "",
                "provenance": {},
                "created_at": now,
                **_version_fields(batch, r),
            }
            for item_id, version_id, r in zip(item_ids, version_ids, records, strict=True)
        ],
    )


def _write_orm(batch: ImportBatch, records) -> None:
    items = Item.objects.bulk_create(
        [Item(**_item_fields(batch, r)) for r in records], batch_size=BATCH_SIZE
    )
    ItemVersion.objects.bulk_create(
        [
            ItemVersion(item_id=item.pk, **_version_fields(batch, r))
            for item, r in zip(items, records, strict=True)
        ],
        batch_size=BATCH_SIZE,
    )
    Item.objects.filter(import_batch=batch).update(
        family=F("pk"),
        current_version=Subquery(
            ItemVersion.objects.filter(item=OuterRef("pk"), number=1).values("pk")[:1]
        ),
    )


def _options_to_json(options: ImportOptions) -> dict:
    return {
        "format": options.format,
        "specialty": options.specialty,
        "language": options.language,
        "question_type": options.question_type,
        "source": options.source,
        "mapping": options.mapping,
    }


def _options_from_json(data: dict, file_name: str) -> ImportOptions:
    return ImportOptions(
        format=data.get("format", "auto"),
        file_name=file_name,
        specialty=data.get("specialty", ""),
        language=data.get("language", ""),
        question_type=data.get("question_type", ""),
        source=data.get("source", ""),
        mapping=data.get("mapping") or {},
    )
