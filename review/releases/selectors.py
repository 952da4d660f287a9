"""Reads for releases and the project dashboard.

The review and generation tables are read here and nowhere else in this app, so a change in
their schema touches one file. Everything that can grow with the number of items is either
aggregated in the database or streamed in fixed-size chunks.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import markdown
import nh3
from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils.safestring import mark_safe

from medcot.lifecycle import Status
from medcot.models import OPTION_LABELS, Item, ItemVersion, Project, RevisionStatus
from medcot.roles import ADMIN, require_role
from review.models import (
    ConsensusVote,
    FirstPassReview,
    FirstPassState,
    Panel,
    RubricDimension,
    RubricScore,
)
from review.quality.models import VerdictPosterior
from review.releases.diff import release_diff
from review.releases.models import Release, ReleaseItem
from review.selectors import expert_pseudonyms, pseudonym

DIMENSIONS = tuple(RubricDimension.values)
SCORES = (0, 1, 2)
FILTER_KEYS = ("specialties", "languages", "question_types")


# ---------------------------------------------------------------------------------------------
# Access


def release_get_for_admin(*, user, project_slug: str, version: str) -> Release:
    require_role(user, ADMIN)
    try:
        return Release.objects.select_related("project", "previous").get(
            project__slug=project_slug, version=version
        )
    except Release.DoesNotExist as exc:
        raise Http404 from exc


def release_file_path(*, release: Release, name: str) -> Path:
    """The path of one of a built release's files; 404 for any other name. Only names the
    build recorded are looked up, so no path taken from a URL reaches the disk."""
    if release.state != Release.State.BUILT or name not in release.files:
        raise Http404("No such file in this release")
    path = Path(settings.MEDIA_ROOT) / release.directory / name
    if not path.is_file():
        raise Http404("The file is missing from the server's disk")
    return path


def release_list(*, project: Project) -> QuerySet[Release]:
    return Release.objects.filter(project=project).order_by("-created_at", "-id")


def release_latest_built(*, project: Project, exclude_id: int | None = None) -> Release | None:
    qs = Release.objects.filter(project=project, state=Release.State.BUILT)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.order_by("-built_at", "-id").first()


# ---------------------------------------------------------------------------------------------
# Which items a release may contain


def release_candidates(*, project: Project, filters: dict) -> QuerySet[Item]:
    """Approved items that match the filters, whatever their consensus."""
    qs = Item.objects.filter(project=project, status=Status.APPROVED, current_version__isnull=False)
    if filters.get("specialties"):
        qs = qs.filter(specialty__in=filters["specialties"])
    if filters.get("languages"):
        qs = qs.filter(language__in=filters["languages"])
    if filters.get("question_types"):
        qs = qs.filter(question_type__in=filters["question_types"])
    return qs


def release_eligible_items(*, project: Project, filters: dict) -> QuerySet[Item]:
    """Approved items whose current version has the consensus the project requires: at least
    `consensus_minimum` experts who hold the version's key correct and approve its phrasing.
    The status alone is not trusted, so an item approved by any other path stays out.

    One join and GROUP BY rather than a subquery per item: at a million items the planner
    hashes the votes once instead of probing them a million times. Counting vote rows counts
    experts, because a vote is unique per (item, version, expert)."""
    return (
        release_candidates(project=project, filters=filters)
        .filter(
            consensus_votes__version=F("current_version"),
            consensus_votes__answer=F("current_version__answer"),
            consensus_votes__approve_phrasing=True,
        )
        .annotate(agreeing=Count("consensus_votes"))
        .filter(agreeing__gte=project.consensus_minimum)
        .order_by("id")
    )


def source_licenses(*, project: Project) -> list[dict]:
    """The licences of the sources a release would draw on (the approved items; every item
    while none is approved), most restrictive first, with the files they came from. A
    synthetic item carries its seed's licence."""
    from django.db.models import Value

    from medcot.licenses import UNKNOWN, label, restrictions
    from medcot.models import ImportBatch

    items = Item.objects.filter(project=project, status=Status.APPROVED)
    if not items.exists():
        items = Item.objects.filter(project=project, control__isnull=True)
    counts = dict(
        items.annotate(
            lic=Coalesce("import_batch__license", "family__import_batch__license", Value(UNKNOWN))
        )
        .order_by()
        .values("lic")
        .annotate(n=Count("id"))
        .values_list("lic", "n")
    )
    files: dict[str, list[str]] = defaultdict(list)
    for code, name in (
        ImportBatch.objects.filter(project=project, state=ImportBatch.State.DONE)
        .order_by("created_at")
        .values_list("license", "file_name")
    ):
        if name not in files[code]:
            files[code].append(name)
    return sorted(
        (
            {"code": code, "label": label(code), "items": n, "files": files.get(code, [])}
            for code, n in counts.items()
        ),
        key=lambda row: (-len(restrictions(row["code"])), row["code"]),
    )


def filter_choices(*, project: Project) -> dict:
    approved = Item.objects.filter(project=project, status=Status.APPROVED)

    def counts(field: str) -> list[tuple[str, int]]:
        return list(
            approved.order_by(field).values(field).annotate(n=Count("id")).values_list(field, "n")
        )

    return {
        "specialties": counts("specialty"),
        "languages": counts("language"),
        "question_types": counts("question_type"),
        "approved": approved.count(),
    }


# ---------------------------------------------------------------------------------------------
# The records of a release, streamed


RECORD_COLUMNS = (
    "ri.item_id",
    "i.external_id",
    "i.family_id",
    "f.external_id",
    "i.kind",
    "i.question_type",
    "i.specialty",
    "i.cognitive_level",
    "i.difficulty",
    "i.language",
    "i.revision_status",
    "ri.version_id",
    "v.number",
    "v.stem",
    "v.option_a",
    "v.option_b",
    "v.option_c",
    "v.option_d",
    "v.option_e",
    "v.answer",
    "v.cot",
    # Case groups: a synthetic sibling belongs to its seed's case.
    "COALESCE(NULLIF(i.group_id, ''), f.group_id, '')",
    "COALESCE(i.group_order, f.group_order)",
    "COALESCE(NULLIF(i.case_text, ''), f.case_text, '')",
)


def _release_rows(*, release_id: int, first: int, last: int) -> list[tuple]:
    """One page of the frozen list joined to its items and versions.

    Raw SQL for one reason: the page's id range is stated on the item table as well as on the
    frozen list. PostgreSQL does not carry a range across a join, and without it the planner
    may merge-join against the item index from its first row, making every page slower than
    the one before it."""
    sql = (
        f"SELECT {', '.join(RECORD_COLUMNS)} "  # noqa: S608 - table names from the models
        f"FROM {ReleaseItem._meta.db_table} ri "
        f"JOIN {Item._meta.db_table} i ON i.id = ri.item_id "
        f"LEFT JOIN {Item._meta.db_table} f ON f.id = i.family_id "
        f"JOIN {ItemVersion._meta.db_table} v ON v.id = ri.version_id "
        "WHERE ri.release_id = %s AND ri.item_id BETWEEN %s AND %s AND i.id BETWEEN %s AND %s "
        "ORDER BY ri.item_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [release_id, first, last, first, last])
        return cursor.fetchall()


def release_records(*, release: Release, chunk_size: int = 2000) -> Iterator[dict]:
    """One dict per released item, in item id order, built from the frozen item list.

    Keyset pagination (`item_id > last`) rather than one long server-side cursor: each chunk
    is a short query of its own, so the build can record its progress between chunks in
    autocommit, and memory stays flat at one chunk whatever the size of the release."""
    pseudonyms = expert_pseudonyms()
    last = 0
    while True:
        page = list(
            ReleaseItem.objects.filter(release=release, item_id__gt=last)
            .order_by("item_id")
            .values_list("item_id", flat=True)[:chunk_size]
        )
        if not page:
            return
        rows = _release_rows(release_id=release.pk, first=page[0], last=page[-1])
        ids = [r[0] for r in rows]
        related = _related_for_chunk(
            first=ids[0],
            last=ids[-1],
            keys={r[0]: (r[11], r[19]) for r in rows},
            pseudonyms=pseudonyms,
        )
        for row in rows:
            yield _record(row, related)
        last = ids[-1]


def _related_for_chunk(*, first: int, last: int, keys: dict[int, tuple], pseudonyms) -> dict:
    """The review trail of the items `keys` ({item id: (released version id, key)}), read with
    item id ranges rather than IN lists of thousands of ids: range scans on the item indexes
    are cheap, and rows of items outside the release (in the same id range) are skipped.
    Long because it is seven parallel reads over the same range, each a few lines, feeding one
    dict; apart, they would be seven functions used once, each taking `span` and `keys`."""
    from generation.public import ReanswerAttempt

    span = {"item_id__gte": first, "item_id__lte": last}
    first_pass: dict[int, tuple] = {}
    for item_id, outcome, *criteria in (
        FirstPassReview.objects.filter(state=FirstPassState.APPLIED, **span)
        .order_by("item_id", "created_at", "id")
        .values_list("item_id", "outcome", "relevance", "correctness", "sufficiency")
    ):
        if item_id in keys:
            first_pass[item_id] = (outcome, int(all(criteria)))

    attempts = {
        item_id: (n, first_correct)
        for item_id, n, first_correct in ReanswerAttempt.objects.filter(**span)
        .order_by()
        .values("item_id")
        .annotate(n=Count("id"), first_correct=Min("number", filter=Q(correct=True)))
        .values_list("item_id", "n", "first_correct")
        if item_id in keys
    }

    rubric: dict[int, dict[tuple[int, str], dict]] = defaultdict(dict)
    for item_id, round_, expert_id, dimension, score in (
        RubricScore.objects.filter(**span)
        .order_by("item_id", "round", "expert_id", "dimension")
        .values_list("item_id", "round", "expert_id", "dimension", "score")
    ):
        if item_id not in keys:
            continue
        key = (round_, pseudonym(pseudonyms, expert_id))
        entry = rubric[item_id].setdefault(
            key, {"expert": key[1], "round": round_} | dict.fromkeys(DIMENSIONS)
        )
        entry[dimension] = score

    consensus: dict[int, list[str]] = defaultdict(list)
    for item_id, version_id, expert_id, answer, approve in (
        ConsensusVote.objects.filter(approve_phrasing=True, **span)
        .order_by("item_id", "expert_id")
        .values_list("item_id", "version_id", "expert_id", "answer", "approve_phrasing")
    ):
        if item_id in keys and (version_id, answer) == keys[item_id] and approve:
            consensus[item_id].append(pseudonym(pseudonyms, expert_id))

    escalated = {
        item_id
        for item_id in Panel.objects.filter(**span).values_list("item_id", flat=True)
        if item_id in keys
    }
    from review.judge.release import judge_entries

    # The aggregated verdict (review/quality), when it was fitted on the released version.
    posteriors = {
        item_id: (round(p, 6), n)
        for item_id, version_id, p, n in VerdictPosterior.objects.filter(**span).values_list(
            "item_id", "version_id", "p_valid", "n_verdicts"
        )
        if item_id in keys and version_id == keys[item_id][0]
    }
    return {
        "posteriors": posteriors,
        "first_pass": first_pass,
        "attempts": attempts,
        "rubric": rubric,
        "consensus": consensus,
        "escalated": escalated,
        "judge": judge_entries(span=span, keys=keys),
    }


def _record(row: tuple, related: dict) -> dict:
    """One line of data.jsonl from an item's row and its review trail. Long because it is a
    flat mapping, a field a line, of the row onto the dataset's schema (docs/ and the card)."""
    (
        item_id,
        external_id,
        family_id,
        family_external_id,
        kind,
        question_type,
        specialty,
        cognitive_level,
        difficulty,
        language,
        revision_status,
        _version_id,
        version_number,
        stem,
        *options_and_rest,
    ) = row
    option_values = options_and_rest[:5]
    answer, cot = options_and_rest[5], options_and_rest[6]
    group_id, group_order, case_text = options_and_rest[7:10]
    options = {
        label: (text or None) for label, text in zip(OPTION_LABELS, option_values, strict=True)
    }
    first_pass = related["first_pass"].get(item_id)
    attempts, first_correct = related["attempts"].get(item_id, (0, None))
    consensus = sorted(related["consensus"].get(item_id, []))
    rubric = [related["rubric"][item_id][key] for key in sorted(related["rubric"].get(item_id, {}))]
    return {
        "item_id": item_id,
        "external_id": external_id,
        "seed_family_id": family_id or item_id,
        "seed_family_external_id": family_external_id or external_id,
        "group_id": group_id or None,
        "group_order": group_order,
        "case_text": case_text or None,
        "kind": kind,
        "question_type": question_type,
        "specialty": specialty,
        "cognitive_level": cognitive_level or None,
        "difficulty": difficulty or None,
        "language": language,
        "question": stem,
        "options": options,
        "answer": answer,
        "answer_text": options.get(answer) or "",
        "cot": cot,
        "version": version_number,
        "revision_status": revision_status or RevisionStatus.UNREVISED,
        "first_pass_result": first_pass[0] if first_pass else None,
        "first_pass_score": first_pass[1] if first_pass else None,
        "reanswer_attempts": attempts,
        "first_correct_attempt": first_correct,
        "escalated": item_id in related["escalated"],
        "rubric_scores": rubric,
        "consensus_size": len(consensus),
        "consensus_experts": consensus,
        "machine_judge_scores": related["judge"].get(item_id, []),
        "verdict_confidence": related["posteriors"].get(item_id, (None, None))[0],
        "n_verdicts": related["posteriors"].get(item_id, (None, None))[1],
    }


# ---------------------------------------------------------------------------------------------
# Pages


def release_diff_page(*, base: Release, release: Release, limit: int = 200) -> dict:
    """Counts of every change between two built releases and the first `limit` changes with
    the items' external ids."""
    changes = []
    summary = {"added": 0, "removed": 0, "changed": 0, "fields": Counter()}
    for change in release_diff(
        release_file_path(release=base, name="data.jsonl"),
        release_file_path(release=release, name="data.jsonl"),
    ):
        summary[change["change"]] += 1
        summary["fields"].update(change.get("fields", ()))
        if len(changes) < limit:
            changes.append(change)
    names = dict(
        Item.objects.filter(pk__in=[c["item_id"] for c in changes]).values_list("pk", "external_id")
    )
    for change in changes:
        change["external_id"] = names.get(change["item_id"], "")
    summary["fields"] = sorted(summary["fields"].items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "summary": summary,
        "changes": changes,
        "truncated": sum(summary[k] for k in ("added", "removed", "changed")) > len(changes),
    }


def release_card(*, release: Release, chart_url) -> dict:
    """The release's README.md split into its YAML header and its body rendered as HTML (the
    charts pointing at `chart_url(name)`), sanitized with an allow-list."""
    try:
        text = release_file_path(release=release, name="README.md").read_text(encoding="utf-8")
    except Http404:
        return {"header": "", "html": ""}
    header, body = "", text
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end > 0:
            header, body = text[4:end], text[end + 5 :]
    body = re.sub(
        r"\]\((charts/[a-z_]+\.svg)\)",
        lambda m: f"]({chart_url(m.group(1))})",
        body,
    )
    html = markdown.markdown(body, extensions=["tables"], output_format="html")
    clean = nh3.clean(
        html,
        tags={
            "h1",
            "h2",
            "h3",
            "p",
            "ul",
            "ol",
            "li",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "code",
            "pre",
            "strong",
            "em",
            "img",
            "br",
        },
        attributes={"img": {"src", "alt"}, "th": {"align"}, "td": {"align"}},
        url_schemes=set(),
    )
    return {"header": header, "html": mark_safe(clean)}  # noqa: S308
