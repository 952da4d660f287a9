"""Expansion: a seed grows a family of sibling questions, near-duplicates dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from generation import dedup
from generation.models import NearDuplicateBand
from generation.services.calls import CallInfo, llm_call_record
from generation.services.common import MAX_DROPPED_PER_REPLY
from generation.services.jobs import JobContext, job_finish, run_state
from medcot.bulk import allocate_ids_many, ids_in, ids_params, insert_dicts_together, is_postgres
from medcot.lifecycle import Status, creation_event_values, transition_many
from medcot.models import OPTION_LABELS, AuthorKind, Event, Item, ItemKind, ItemVersion

# The core's tables, by the names the core gives them.
ITEM = Item._meta.db_table
ITEM_VERSION = ItemVersion._meta.db_table


# -- expansion ------------------------------------------------------------------------------


def family_members(*, seed_id: int):
    return Item.objects.filter(family_id=seed_id, kind=ItemKind.SYNTHETIC)


def _family(seed_id: int) -> list[tuple[int, str]]:
    """(id, external id) of the seed's synthetic siblings."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, external_id FROM {ITEM} WHERE family_id = %s AND kind = %s",  # noqa: S608
            [seed_id, ItemKind.SYNTHETIC.value],
        )
        return cursor.fetchall()


def expand_plan(*, ctx: JobContext) -> int | None:
    """How many synthesized questions the family still needs, or None when the job has
    nothing to do. Indexes the seed for near-duplicate checks."""
    # The status was read with the claim, a moment ago.
    if ctx.item_status != Status.GENERATED:
        return None
    dedup.index_item(
        project_id=ctx.project_id,
        item_id=ctx.item_id,
        band_values=dedup.bands(dedup.keys(dedup.question_text(ctx.stem, ctx.options))),
    )
    return max(0, ctx.expansion_factor - 1 - len(_family(ctx.item_id)))


_TEXTS_SQL = (
    "SELECT i.id, i.current_version_id, v.stem, "  # noqa: S608 (names from code)
    + ", ".join(f"v.option_{label.lower()}" for label in OPTION_LABELS)
    + f" FROM {ITEM} i JOIN {ITEM_VERSION} v ON v.id = i.current_version_id "
    "WHERE i.id {}"
)


def _known_keys(item_ids: set[int]) -> dict[int, np.ndarray | tuple[int, str]]:
    """For each item, the 3-gram keys of its current question text when this process has
    them cached, or else (version id, text) to compute them from: one query, and no
    computing in the database step."""
    if not item_ids:
        return {}
    ids = sorted(item_ids)
    known: dict[int, np.ndarray | tuple[int, str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_TEXTS_SQL.format(ids_in(ids)), ids_params(ids))
        rows = cursor.fetchall()
    for item_id, version_id, stem, *options in rows:
        cached = dedup.candidate_keys.get((item_id, version_id))
        if cached is None:
            options = {k: v for k, v in zip(OPTION_LABELS, options, strict=True) if v}
            known[item_id] = (version_id, dedup.question_text(stem or "", options))
        else:
            known[item_id] = cached
    return known


def _keys_from(known: dict[int, np.ndarray | tuple[int, str]]) -> dict[int, np.ndarray]:
    """`_known_keys` with the missing keys computed (and cached)."""
    keys = {}
    for item_id, value in known.items():
        if isinstance(value, tuple):
            version_id, text = value
            value = dedup.keys(text)
            dedup.candidate_keys.put((item_id, version_id), value)
        keys[item_id] = value
    return keys


def _siblings_insert(items: list[dict], versions: list[dict]) -> tuple[list[int], list]:
    """Give new items their first versions (one version per item, in order) and return the
    items' ids, with what is left to write. On PostgreSQL the ids come from the sequences
    first, so each item is written with its current version already set (the foreign keys
    are checked at commit), together with whatever else goes in with them (see
    `insert_dicts_together`); elsewhere the items are inserted, then their versions, then
    pointed at them."""
    if is_postgres():
        item_ids, version_ids = allocate_ids_many([Item, ItemVersion], len(items))
        for item, version, item_id, version_id in zip(
            items, versions, item_ids, version_ids, strict=True
        ):
            item["id"], item["current_version_id"] = item_id, version_id
            version["id"], version["item_id"] = version_id, item_id
        return item_ids, [(Item, items), (ItemVersion, versions)]
    siblings = Item.objects.bulk_create([Item(**item) for item in items])
    rows = ItemVersion.objects.bulk_create(
        [
            ItemVersion(item_id=item.pk, **version)
            for item, version in zip(siblings, versions, strict=True)
        ]
    )
    for item, version in zip(siblings, rows, strict=True):
        item.current_version = version
    Item.objects.bulk_update(siblings, ["current_version"])
    return [item.pk for item in siblings], []


@dataclass
class FamilyStored:
    created: int
    dropped: int
    run_state: str
    # The family reached its size, and went to first-pass review in the same transaction.
    complete: bool = False


@dataclass
class FamilyPlan:
    """What one reply adds to a family, decided before the transaction that stores it: the
    questions kept (with their 3-gram keys and bands), in order, and those dropped as
    near-duplicates with their twin: an item id, or -(n + 1) for the n-th kept question of the
    same reply."""

    kept: list[tuple[dict, np.ndarray, list[int]]] = field(default_factory=list)
    dropped: list[tuple[dict, int]] = field(default_factory=list)


def signed_questions(questions: list[dict]) -> list[tuple[np.ndarray, list[int]]]:
    """Each question's 3-gram keys and band values."""
    signed = []
    for question in questions:
        text_keys = dedup.keys(dedup.question_text(question["stem"], question["options"]))
        signed.append((text_keys, dedup.bands(text_keys)))
    return signed


def family_candidates(
    *, ctx: JobContext, bands_of: list[list[int]]
) -> tuple[list[list[int]], dict[int, np.ndarray | tuple[int, str]]]:
    """The database half of the near-duplicate check: every question's candidates in the
    project, and what is known of their texts (see `_known_keys`), in two queries."""
    candidates_of = dedup.candidates_many(project_id=ctx.project_id, band_lists=bands_of)
    return candidates_of, _known_keys({i for ids in candidates_of for i in ids})


def family_sort(
    *,
    questions: list[dict],
    signed: list[tuple[np.ndarray, list[int]]],
    candidates_of: list[list[int]],
    known: dict[int, np.ndarray | tuple[int, str]],
    need: int,
) -> FamilyPlan:
    """The computing half: keep each question unless it is a near-duplicate of a candidate
    or of a question kept before it from the same reply, until the family has what it needs.
    No database access, so it runs outside the database threads."""
    texts = _keys_from(known)
    plan = FamilyPlan()
    for question, (grams, band_values), candidate_ids in zip(
        questions, signed, candidates_of, strict=True
    ):
        if len(plan.kept) >= need:
            break
        twin = next(
            (i for i in candidate_ids if dedup.jaccard(grams, texts[i]) >= dedup.THRESHOLD),
            None,
        )
        if twin is None:
            # Questions kept from this same reply are not indexed yet: compare directly and
            # name the twin by its position until its row exists.
            twin = next(
                (
                    -(n + 1)
                    for n, (_q, other, _b) in enumerate(plan.kept)
                    if dedup.jaccard(grams, other) >= dedup.THRESHOLD
                ),
                None,
            )
        if twin is None:
            plan.kept.append((question, grams, band_values))
        else:
            plan.dropped.append((question, twin))
    return plan


def family_plan(*, ctx: JobContext, questions: list[dict], need: int) -> FamilyPlan:
    """`family_candidates` then `family_sort`, in the calling thread."""
    questions = questions[: max(0, need) + MAX_DROPPED_PER_REPLY]
    signed = signed_questions(questions)
    candidates_of, known = family_candidates(ctx=ctx, bands_of=[b for _, b in signed])
    return family_sort(
        questions=questions, signed=signed, candidates_of=candidates_of, known=known, need=need
    )


def family_store(*, ctx: JobContext, call: CallInfo, plan: FamilyPlan) -> FamilyStored:
    """Create the synthetic siblings a plan keeps (no more than the family still needs) and
    log the near-duplicates it dropped; when that completes the family, move it to first-pass
    review and end the job in the same transaction.

    A family's siblings, their first versions, their events and their near-duplicate index
    rows are written by one statement on PostgreSQL: expansion is the pipeline's heaviest
    database step. The rows are the ones `item_version_create` would write for a new item
    (version 1, a `version_created` event)."""
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        seed = _seed_locked(ctx.item_id)
        if seed is None or seed["status"] != Status.GENERATED:
            return FamilyStored(0, 0, run_state(run_id=ctx.run_id))
        family = _family(ctx.item_id)
        taken = {external_id for _, external_id in family}
        # The plan was made for what the family needed before this transaction; a twin task
        # (a redelivered message) may have added siblings since.
        kept = plan.kept[: max(0, ctx.expansion_factor - 1 - len(taken))]
        dropped = [(q, twin) for q, twin in plan.dropped if twin >= 0 or -twin <= len(kept)]
        rows = _SiblingRows(ctx=ctx, call=call, call_id=call_id, seed=seed, now=timezone.now())
        sibling_ids, writes = _siblings_insert(
            [rows.item(external_id) for external_id in _sibling_external_ids(seed, kept, taken)],
            [rows.version(question) for question, _g, _b in kept],
        )
        events = [
            rows.dropped_event(question, sibling_ids[-twin - 1] if twin < 0 else twin)
            for question, twin in dropped
        ]
        for sibling_id, (question, _g, _b) in zip(sibling_ids, kept, strict=True):
            events += rows.sibling_events(sibling_id, question)
        bands = [
            {"project_id": ctx.project_id, "item_id": sibling_id, "band": band, "value": value}
            for sibling_id, (_q, _g, band_values) in zip(sibling_ids, kept, strict=True)
            for band, value in enumerate(band_values)
        ]
        insert_dicts_together([*writes, (Event, events), (NearDuplicateBand, bands)])
        complete = len(taken) + len(sibling_ids) >= ctx.expansion_factor - 1
        if complete:
            family_ids = [ctx.item_id, *(i for i, _ in family), *sibling_ids]
            transition_many(family_ids, Status.GENERATED, Status.FIRST_REVIEW)
            job_finish(job_id=ctx.job_id, ctx=ctx)
    return FamilyStored(len(sibling_ids), len(dropped), run_state(run_id=ctx.run_id), complete)


def _sibling_external_ids(seed: dict, kept: list, taken: set[str]) -> list[str]:
    """`<seed id>~s<n>` for each kept question, skipping the numbers the family already has."""
    external_ids, n = [], 0
    for _ in kept:
        n += 1
        while f"{seed['external_id']}~s{n}" in taken:
            n += 1
        external_ids.append(f"{seed['external_id']}~s{n}")
    return external_ids


@dataclass
class _SiblingRows:
    """The rows `family_store` writes for one family, all stamped with one call and one time."""

    ctx: JobContext
    call: CallInfo
    call_id: int
    seed: dict
    now: object
    reason: str = gettext_noop("synthesized from the seed's explanation")

    def item(self, external_id: str) -> dict:
        return {
            "project_id": self.ctx.project_id,
            "kind": ItemKind.SYNTHETIC.value,
            "family_id": self.ctx.item_id,
            "external_id": external_id,
            "question_type": self.seed["question_type"],
            "specialty": self.seed["specialty"],
            "language": self.seed["language"],
            "source": self.seed["source"],
            "status": Status.GENERATED.value,
            "status_changed_at": self.now,
            "created_at": self.now,
        }

    def version(self, question: dict) -> dict:
        return {
            "number": 1,
            "stem": question["stem"],
            "answer": question["answer"],
            "cot": question["cot"],
            "reasoning": "",
            "author_kind": AuthorKind.LLM.value,
            "author_id": None,
            "reason": self.reason,
            "provenance": {
                "task": "synthesize",
                "prompt_version": self.call.prompt_version_id,
                "llm_call": self.call_id,
                "model": self.call.record.model,
                "profile": self.ctx.profile.name,
                "aspect": question.get("aspect", ""),
                "seed": self.ctx.item_id,
                "job": self.ctx.job_id,
            },
            "created_at": self.now,
            **{
                f"option_{label.lower()}": question["options"].get(label, "")
                for label in OPTION_LABELS
            },
        }

    def dropped_event(self, question: dict, twin_id: int) -> dict:
        return {
            "project_id": self.ctx.project_id,
            "item_id": self.ctx.item_id,
            "kind": "near_duplicate_dropped",
            "reason": f"synthesized question too similar to item {twin_id}",
            "data": {
                "similar_to": twin_id,
                "stem": question["stem"][:500],
                "llm_call": self.call_id,
                "job": self.ctx.job_id,
            },
            "created_at": self.now,
        }

    def sibling_events(self, sibling_id: int, question: dict) -> list[dict]:
        """Its creation (lifecycle's builder) and its first version."""
        return [
            creation_event_values(
                project_id=self.ctx.project_id,
                item_id=sibling_id,
                status=Status.GENERATED,
                reason=gettext_noop("synthesized from its seed"),
                data={
                    "seed": self.ctx.item_id,
                    "llm_call": self.call_id,
                    "aspect": question.get("aspect", ""),
                },
                now=self.now,
            ),
            {
                "project_id": self.ctx.project_id,
                "item_id": sibling_id,
                "kind": "version_created",
                "reason": self.reason,
                "data": {"number": 1, "author_kind": AuthorKind.LLM.value},
                "created_at": self.now,
            },
        ]


_SEED_SQL = (
    "SELECT status, external_id, question_type, specialty, language, source "  # noqa: S608
    f"FROM {ITEM} WHERE id = %s"
)


def _seed_locked(seed_id: int) -> dict | None:
    """What siblings inherit from their seed, the seed's row locked until the end of the
    transaction (so two jobs cannot fill the same family)."""
    sql = _SEED_SQL
    if connection.features.has_select_for_update:
        sql = _SEED_SQL + " FOR NO KEY UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [seed_id])
        row = cursor.fetchone()
    if row is None:
        return None
    names = ("status", "external_id", "question_type", "specialty", "language", "source")
    return dict(zip(names, row, strict=True))


def family_complete(*, ctx: JobContext, short_by: int = 0, reason: str = "") -> None:
    """The family is as complete as it will get: seed and siblings go to first-pass review."""
    with transaction.atomic():
        seed = _seed_locked(ctx.item_id)
        if seed is not None and seed["status"] == Status.GENERATED:
            ids = [ctx.item_id, *(i for i, _ in _family(ctx.item_id))]
            transition_many(ids, Status.GENERATED, Status.FIRST_REVIEW)
            if short_by:
                Event.objects.create(
                    project_id=ctx.project_id,
                    item_id=ctx.item_id,
                    kind="expansion_short",
                    reason=reason,
                    data={"missing": short_by, "job": ctx.job_id},
                )
        job_finish(job_id=ctx.job_id, ctx=ctx)
