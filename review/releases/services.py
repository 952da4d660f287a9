"""Writes for releases: create one, freeze its items, build its files.

A release moves queued → building → built (or failed, and from there back to queued on a
retry). Every move is a conditional UPDATE on the expected state, so two workers handed the
same build cannot both build it, and a built release is never touched again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from medcot.models import Project
from review.releases import selectors
from review.releases.card import CHART_FILES, ReleaseStats, card_charts, render_card
from review.releases.diff import write_diff
from review.releases.models import Release, ReleaseItem
from review.releases.writers import ReleaseWriter, file_sha256, write_checksums, write_zip
from review.reports import selectors as report_selectors
from review.reports.charts import svg_document

logger = logging.getLogger(__name__)

# A build left in `building` this long is taken to be from a worker that died, and may be
# taken over by a redelivered task.
STALE_BUILD_SECONDS = 3600


class ReleaseError(Exception):
    """The release cannot be created or built as asked; the message says why."""


class ReleaseExists(ReleaseError):
    """The project already has a release of this version; releases are immutable. The API
    answers 409, the browser shows the message on the form."""


def _clean_filters(filters: dict | None) -> dict:
    cleaned = {}
    for key, values in (filters or {}).items():
        if key not in selectors.FILTER_KEYS:
            raise ReleaseError(_("Unknown filter %(key)s.") % {"key": key})
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise ReleaseError(_("Filter %(key)s must be a list of values.") % {"key": key})
        if values:
            cleaned[key] = sorted(set(values))
    return cleaned


def card_language_default(project: Project) -> str:
    """The dataset card speaks the project's language: Chinese for a Chinese project; English
    for an English or mixed one (the card is read beyond the team)."""
    return "zh-hans" if project.language == "zh" else "en"


def release_create(
    *,
    project: Project,
    version: str,
    actor,
    filters: dict | None = None,
    license: str = "",
    notes: str = "",
    card_language: str = "",
    dispatch: bool = True,
) -> Release:
    """Register a release and queue its build. The item set is frozen by the worker at the
    start of the build, from the items approved with consensus at that moment."""
    filters = _clean_filters(filters)
    if not license.strip():
        # The default: the least licence that keeps every source's restrictions.
        from medcot.licenses import most_restrictive

        sources = selectors.source_licenses(project=project)
        license = most_restrictive(row["code"] for row in sources)
    if Release.objects.filter(project=project, version=version.strip()).exists():
        raise ReleaseExists(
            _("Release %(version)s already exists; releases are immutable.")
            % {"version": version.strip()}
        )
    release = Release(
        project=project,
        version=version.strip(),
        filters=filters,
        license=license.strip(),
        notes=notes,
        card_language=card_language or card_language_default(project),
        created_by=actor,
        previous=selectors.release_latest_built(project=project),
    )
    try:
        release.full_clean()
    except ValidationError as exc:
        raise ReleaseError(" ".join(exc.messages)) from exc
    if not selectors.release_eligible_items(project=project, filters=filters).exists():
        raise ReleaseError(
            _("No approved item with consensus matches these filters: there is nothing to release.")
        )
    with transaction.atomic():
        release.save()
        if dispatch:
            from review.releases.tasks import build_release_task

            transaction.on_commit(partial(build_release_task.delay, release.pk))
    return release


def release_retry(*, release: Release, dispatch: bool = True) -> bool:
    """Queue a failed build again. Returns False if the release was not failed."""
    with transaction.atomic():
        moved = Release.objects.filter(pk=release.pk, state=Release.State.FAILED).update(
            state=Release.State.QUEUED, error="", progress_done=0
        )
        if moved and dispatch:
            from review.releases.tasks import build_release_task

            transaction.on_commit(partial(build_release_task.delay, release.pk))
    return bool(moved)


def _claim(release_id: int) -> bool:
    now = timezone.now()
    if Release.objects.filter(pk=release_id, state=Release.State.QUEUED).update(
        state=Release.State.BUILDING, started_at=now, error=""
    ):
        return True
    stale = now - timedelta(seconds=STALE_BUILD_SECONDS)
    return bool(
        Release.objects.filter(
            pk=release_id, state=Release.State.BUILDING, started_at__lt=stale
        ).update(started_at=now)
    )


def release_freeze(*, release: Release) -> None:
    """Write the release's item list: every eligible item and the exact version released. One
    INSERT … SELECT, so a million items are frozen without passing through Python."""
    if release.frozen:
        return
    eligible = selectors.release_eligible_items(project=release.project, filters=release.filters)
    sql, params = eligible.values_list("id", "current_version_id").query.sql_with_params()
    table = ReleaseItem._meta.db_table
    with transaction.atomic():
        locked = Release.objects.select_for_update().get(pk=release.pk)
        if locked.frozen:
            release.refresh_from_db()
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (release_id, item_id, version_id) "  # noqa: S608
                f"SELECT %s, frozen.id, frozen.current_version_id FROM ({sql}) frozen",
                (release.pk, *params),
            )
            count = cursor.rowcount
        candidates = selectors.release_candidates(
            project=release.project, filters=release.filters
        ).count()
        Release.objects.filter(pk=release.pk).update(
            frozen=True, item_count=count, excluded_without_consensus=candidates - count
        )
    if connection.vendor == "postgresql":
        # Thousands of rows just appeared; without fresh statistics the planner takes the
        # frozen list for a handful of rows and sorts all of it for every page of the build.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    release.refresh_from_db()


def release_snapshot_stats(*, release: Release) -> None:
    """The project's funnel and agreement statistics as of now, kept with the release so that
    a rebuild writes the same card."""
    if release.stats.get("funnel") is not None:
        return
    stats = {
        "funnel": report_selectors.project_funnel(project=release.project),
        "agreement": report_selectors.project_agreement(project=release.project),
    }
    Release.objects.filter(pk=release.pk).update(stats=stats)
    # Read back what the database kept, so the first build and any rebuild render the very
    # same values (JSON turns tuples into lists; jsonb reorders keys).
    release.stats = Release.objects.values_list("stats", flat=True).get(pk=release.pk)


def release_directory(release: Release) -> Path:
    return Path(settings.MEDIA_ROOT) / "releases" / release.project.slug / release.version


def _card_write(release: Release, *, stats: dict, directory: Path) -> None:
    """The dataset card (README.md), its charts and agreement.json. The card (and its charts)
    in the language chosen at build, never the worker's."""
    previous = release.previous
    charts = card_charts(
        funnel=stats["funnel"],
        release_stats=stats["release"],
        language=release.card_language or "en",
    )
    (directory / "charts").mkdir(exist_ok=True)
    for name, path in CHART_FILES:
        (directory / path).write_bytes(svg_document(charts[name]))
    (directory / "agreement.json").write_text(
        json.dumps(stats["agreement"], ensure_ascii=False, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    with translation.override(release.card_language or "en"):
        readme = render_card(
            project_name=release.project.name,
            project_description=release.project.description,
            version=release.version,
            license=release.license,
            notes=release.notes,
            filters=release.filters,
            stats=stats,
            previous_version=previous.version if previous else None,
        )
        from review.judge.release import card_section

        judge = "\n".join(card_section(project=release.project))
    readme = readme.rstrip("\n") + "\n" + judge + "\n"
    (directory / "README.md").write_text(readme, encoding="utf-8", newline="\n")


def release_write_files(
    *, release: Release, directory: Path, progress=None, chunk_size: int = 2000
) -> dict:
    """Write every file of a frozen release into `directory` and return {name: {sha256,
    bytes}} including the zip. Reads only the frozen item list, the review history of those
    items and `release.stats`, so it gives the same bytes each time it runs."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    release_stats = ReleaseStats()
    every = max(1, chunk_size)
    with ReleaseWriter(directory) as writer:
        for record in selectors.release_records(release=release, chunk_size=chunk_size):
            writer.write(record)
            release_stats.add(record)
            if progress and writer.count % every == 0:
                progress(writer.count)
    if progress:
        progress(writer.count)

    stats = dict(release.stats)
    stats["release"] = release_stats.as_dict()
    previous = release.previous
    if previous is not None:
        previous_data = release_directory(previous) / "data.jsonl"
        if previous_data.exists():
            stats["diff"] = write_diff(
                previous_data, directory / "data.jsonl", directory / "diff.jsonl"
            )
        else:
            # The earlier release's files were removed from the server: build without the
            # diff rather than never build at all; the card says so.
            logger.warning("release %s: files of %s are gone, no diff", release.pk, previous)
            stats["diff"] = None

    _card_write(release, stats=stats, directory=directory)

    zip_name = release.zip_name
    names = [
        p.relative_to(directory).as_posix()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in {zip_name, "checksums.sha256"}
    ]
    files = write_checksums(directory, names, known=writer.digests)
    write_zip(
        directory / zip_name,
        directory,
        [*names, "checksums.sha256"],
        prefix=f"{release.project.slug}-{release.version}",
    )
    files[zip_name] = {
        "sha256": file_sha256(directory / zip_name),
        "bytes": (directory / zip_name).stat().st_size,
    }
    return {"files": files, "stats": stats}


def release_build(*, release_id: int) -> Release:
    """Build a queued release: freeze, snapshot the statistics, write the files into a
    temporary directory, move it into place, and mark the release built. Idempotent: a built
    release is returned as it is, and a build another worker is running is left alone."""
    release = Release.objects.select_related("project", "previous").get(pk=release_id)
    if release.state == Release.State.BUILT or not _claim(release_id):
        return release
    release.refresh_from_db()
    started = time.monotonic()
    final = release_directory(release)
    work = final.with_name(f".{final.name}.building-{os.getpid()}")
    try:
        release_freeze(release=release)
        release_snapshot_stats(release=release)

        def progress(done: int) -> None:
            Release.objects.filter(pk=release.pk, state=Release.State.BUILDING).update(
                progress_done=done
            )

        if work.exists():
            shutil.rmtree(work)
        result = release_write_files(release=release, directory=work, progress=progress)
        if final.exists():
            # Files of an earlier attempt that died after moving them but before saying so.
            shutil.rmtree(final)
        work.rename(final)
        with transaction.atomic():
            moved = Release.objects.filter(pk=release.pk, state=Release.State.BUILDING).update(
                state=Release.State.BUILT,
                files=result["files"],
                zip_sha256=result["files"][release.zip_name]["sha256"],
                stats=result["stats"],
                directory=final.relative_to(Path(settings.MEDIA_ROOT)).as_posix(),
                progress_done=release.item_count,
                built_at=timezone.now(),
                build_seconds=round(time.monotonic() - started, 3),
            )
        if not moved:
            raise ReleaseError("The release left the building state during the build")
    except Exception as exc:
        logger.exception("release %s failed to build", release.pk)
        shutil.rmtree(work, ignore_errors=True)
        Release.objects.filter(pk=release.pk, state=Release.State.BUILDING).update(
            state=Release.State.FAILED, error=str(exc)[:2000] or type(exc).__name__
        )
    release.refresh_from_db()
    return release
