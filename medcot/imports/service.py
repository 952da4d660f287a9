"""Seed import: one service behind the management command, the upload page and the worker.

All-or-nothing: a file with any bad record imports nothing, and the report names every bad line
and why. Records whose id already exists with the same content are left alone, so importing the
same file twice is a no-op; an existing id with different content is an error, never an
overwrite (content changes are new versions, made by people or the pipeline, not by imports).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import partial

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from medcot.bulk import allocate_ids, copy_rows, is_postgres
from medcot.imports.formats import (
    ERROR_LIMIT,
    ErrorLog,
    FormatError,
    ImportOptions,
    LineError,
    content_fingerprint,
    parse_seed_file,
)
from medcot.imports.messages import Msg
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
PREVIEW_RECORDS = 5
logger = logging.getLogger(__name__)


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
    preview: bool = False,
) -> ImportBatch:
    """Record an upload to be processed by a worker (`import_batch_process`), or, with
    `preview`, kept until an admin has seen the preview and confirmed it."""
    return ImportBatch.objects.create(
        project=project,
        state=ImportBatch.State.PREVIEW if preview else ImportBatch.State.PENDING,
        license=options.license or ImportBatch._meta.get_field("license").default,
        file_name=file_name[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        format=options.format,
        options=_options_to_json(options),
        content=data if keep_content else None,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )


def import_batch_submit(
    *,
    project: Project,
    data: bytes,
    file_name: str,
    options: ImportOptions,
    actor=None,
    wait: bool = False,
) -> ImportBatch:
    """An upload to import now (the API's upload): recorded and handed to a worker once the
    transaction commits, or with `wait` processed in this call and returned with its report.
    A previewed upload (the browser's) goes to the worker the same way on `import_batch_confirm`."""
    with transaction.atomic():
        batch = import_batch_create(
            project=project, data=data, file_name=file_name, options=options, actor=actor
        )
        if not wait:
            _dispatch_after_commit(batch.pk)
    if wait:
        batch = import_batch_process(batch_id=batch.pk)
    return batch


def _dispatch_after_commit(batch_id: int) -> None:
    # The task module imports this one; the task is looked up when there is work to send.
    from medcot.tasks import import_seed_batch_task

    transaction.on_commit(partial(import_seed_batch_task.delay, batch_id))


def import_batch_process(*, batch_id: int) -> ImportBatch:
    """Run a pending batch. Safe to call twice: a finished batch is returned unchanged."""
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch_id)
        if batch.is_finished or batch.state == ImportBatch.State.PREVIEW:
            return batch
        batch.state = ImportBatch.State.RUNNING
        batch.save(update_fields=["state"])
    options = _options_from_json(batch.options, batch.file_name)
    data = bytes(batch.content or b"")
    _run_safely(batch=batch, data=data, options=options)
    return batch


def import_batch_confirm(*, batch: ImportBatch, options: ImportOptions) -> ImportBatch:
    """An admin confirmed a previewed upload with these options: hand it to a worker once the
    transaction commits. A second confirmation (a repeated post) changes and sends nothing."""
    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.state != ImportBatch.State.PREVIEW:
            return batch
        batch.options = _options_to_json(options)
        batch.format = options.format
        batch.license = options.license or batch.license
        batch.state = ImportBatch.State.PENDING
        batch.save(update_fields=["options", "format", "license", "state"])
        _dispatch_after_commit(batch.pk)
    return batch


def import_batch_set_options(*, batch: ImportBatch, options: ImportOptions) -> ImportBatch:
    """Change how a previewed upload is read (the preview's "update")."""
    ImportBatch.objects.filter(pk=batch.pk, state=ImportBatch.State.PREVIEW).update(
        options=_options_to_json(options), format=options.format, license=options.license
    )
    batch.refresh_from_db()
    return batch


def import_options_from_batch(batch: ImportBatch) -> ImportOptions:
    return _options_from_json(batch.options, batch.file_name)


def import_batch_discard(*, batch: ImportBatch) -> None:
    """Drop a previewed upload that was never confirmed."""
    ImportBatch.objects.filter(pk=batch.pk, state=ImportBatch.State.PREVIEW).delete()


@dataclass
class Preview:
    """What an import would do, without doing it (the preview page and the API's dry run)."""

    ok: bool
    format: str = ""
    container: str = ""
    records_path: str = ""
    header: bool | None = None
    columns: list[str] = field(default_factory=list)
    mapping: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    record_count: int = 0
    group_count: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    warnings: list[dict] = field(default_factory=list)
    warning_count: int = 0
    message: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def import_preview(
    *, data: bytes, options: ImportOptions, project: Project | None = None
) -> Preview:
    """Parse the file as the import would and say what it found: the layout, the mapping in
    use, the first records as they would be stored, and the problems. Writes nothing."""
    try:
        parsed = parse_seed_file(data, options)
    except FormatError as exc:
        return Preview(
            ok=False,
            message=exc.problem,
            error_count=1,
            errors=[LineError(0, exc.problem).as_dict()],
        )
    except Exception:  # a preview must answer whatever the file holds
        logger.exception("import preview failed on %s", options.file_name)
        message = Msg("internal_preview")
        return Preview(
            ok=False, message=message, error_count=1, errors=[LineError(0, message).as_dict()]
        )
    errors = parsed.errors
    if project is not None and parsed.records and not errors:
        existing = _existing_fingerprints(project.pk, [r.external_id for r in parsed.records])
        for record in parsed.records:
            known = existing.get(record.external_id)
            if known is not None and known != record.fingerprint():
                errors.add(record.line, _changed_message(record.external_id))
    return Preview(
        ok=not errors and bool(parsed.records),
        format=parsed.format,
        container=parsed.container,
        records_path=parsed.records_path,
        header=parsed.header,
        columns=[str(c) for c in parsed.columns],
        mapping=parsed.mapping,
        records=[r.as_dict() for r in parsed.records[:PREVIEW_RECORDS]],
        record_count=len(parsed.records),
        group_count=parsed.group_count,
        errors=[e.as_dict() for e in sorted(errors.kept, key=lambda e: e.line)],
        error_count=errors.total,
        warnings=[w.as_dict() for w in parsed.warnings.kept],
        warning_count=parsed.warnings.total,
        message="" if parsed.records or errors else Msg("no_records"),
    )


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
    errors = _run_safely(batch=batch, data=data, options=options)
    return ImportResult(batch=batch, errors=errors)


def _run_safely(*, batch: ImportBatch, data: bytes, options: ImportOptions) -> list[LineError]:
    """Whatever happens, the batch ends done, rejected or failed: never pending or running."""
    started = time.perf_counter()
    try:
        return _run(batch=batch, data=data, options=options, started=started)
    except BaseException as exc:
        if isinstance(exc, Exception):
            logger.exception("import batch %s failed", batch.pk)
        errors = ErrorLog()
        errors.add(0, Msg("internal_import"))
        _finish(batch, started, state=ImportBatch.State.FAILED, errors=errors)
        if not isinstance(exc, Exception):
            raise
        return errors.kept


def _changed_message(external_id: str) -> Msg:
    return Msg("changed_content", id=external_id)


def _run(
    *, batch: ImportBatch, data: bytes, options: ImportOptions, started: float
) -> list[LineError]:
    options.file_name = options.file_name or batch.file_name
    try:
        parsed = parse_seed_file(data, options)
    except FormatError as exc:
        errors = ErrorLog()
        errors.add(0, exc.problem)
        state = (
            ImportBatch.State.REJECTED
            if getattr(exc.problem, "code", "") == "no_records"
            else ImportBatch.State.FAILED
        )
        return _finish(batch, started, state=state, errors=errors)
    del data

    batch.format = parsed.format
    batch.records = len(parsed.records) + parsed.errors.total
    batch.warnings = [w.as_dict() for w in parsed.warnings.kept]
    batch.warning_count = parsed.warnings.total
    errors = parsed.errors
    if errors:
        return _finish(batch, started, state=ImportBatch.State.REJECTED, errors=errors)
    if not parsed.records:
        errors.add(0, Msg("no_records"))
        return _finish(batch, started, state=ImportBatch.State.REJECTED, errors=errors)

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
                errors.add(record.line, _changed_message(record.external_id))
        if errors:
            transaction.set_rollback(True)
        else:
            _write(batch, new_records)
            batch.created_count = len(new_records)
            batch.unchanged_count = len(parsed.records) - len(new_records)
    if errors:
        return _finish(batch, started, state=ImportBatch.State.REJECTED, errors=errors)
    return _finish(batch, started, state=ImportBatch.State.DONE, errors=ErrorLog())


def _finish(batch: ImportBatch, started: float, *, state: str, errors: ErrorLog) -> list[LineError]:
    """Store the outcome: the first ERROR_LIMIT problems, in line order, and their total."""
    kept = sorted(errors.kept[:ERROR_LIMIT], key=lambda e: (e.line, e.message))
    batch.state = state
    batch.errors = [e.as_dict() for e in kept]
    batch.error_count = errors.total
    batch.duration_ms = int((time.perf_counter() - started) * 1000)
    batch.finished_at = timezone.now()
    # The upload is not needed once processed; the digest stays for provenance.
    batch.content = None
    batch.save()
    return kept


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
        "group_id": r.group_id,
        "group_order": r.group_order,
        "case_text": r.case_text,
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
        "records_path": options.records_path,
        "header": options.header,
        "index_base": options.index_base,
        "license": options.license,
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
        records_path=data.get("records_path", ""),
        header=data.get("header", "auto"),
        index_base=data.get("index_base", ""),
        license=data.get("license", ""),
    )
