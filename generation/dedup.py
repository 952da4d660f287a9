"""Near-duplicate detection for synthesized questions, within a family and across a project.

Each question's text (stem and options) is cut into character 3-grams, which works the same
for Chinese and English. A one-permutation MinHash (one hash per shingle, the minimum kept
per bin) gives 32 values, grouped into 8 bands of 4; items sharing any band value are
candidates, and a candidate is a near-duplicate when the Jaccard similarity of the actual
shingle sets reaches the threshold. The bands are stored (`NearDuplicateBand`), so checking a
new question against tens of thousands costs a handful of indexed lookups.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from generation.models import NearDuplicateBand

SHINGLE = 3
BINS = 32
ROWS = 4
BANDS = BINS // ROWS
THRESHOLD = 0.8
MIN_SHARED_BANDS = 2
MAX_CANDIDATES = 20
_EMPTY = (1 << 64) - 1
_NOISE = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NOISE.sub("", text)


def question_text(stem: str, options: dict[str, str]) -> str:
    # Options are sorted by text so that reordering them does not disguise a duplicate.
    return stem + "|" + "|".join(sorted(options.values()))


def shingles(text: str) -> set[str]:
    clean = normalise(text)
    if len(clean) <= SHINGLE:
        return {clean} if clean else set()
    return {clean[i : i + SHINGLE] for i in range(len(clean) - SHINGLE + 1)}


def _hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "big")


def signature(grams: Iterable[str]) -> list[int]:
    mins = [_EMPTY] * BINS
    for gram in grams:
        value = _hash(gram)
        slot = value % BINS
        if value < mins[slot]:
            mins[slot] = value
    return mins


def bands(grams: Iterable[str]) -> list[int]:
    sig = signature(grams)
    values = []
    for band in range(BANDS):
        chunk = ",".join(str(v) for v in sig[band * ROWS : (band + 1) * ROWS])
        digest = hashlib.blake2b(chunk.encode(), digest_size=8).digest()
        # Signed, to fit PostgreSQL's bigint.
        values.append(int.from_bytes(digest, "big", signed=True))
    return values


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def candidates_many(*, project_id: int, band_lists: list[list[int]]) -> list[list[int]]:
    """For each question (a model reply's worth, in one indexed query): the ids of items in
    the project sharing at least MIN_SHARED_BANDS bands, most similar first.

    Two questions with Jaccard similarity 0.8 share each band with probability 0.8^4 ≈ 0.41, so
    requiring two of eight keeps ~90% of them at the threshold (and nearly all above it) while
    unrelated questions that share boilerplate rarely qualify: the exact comparison that
    follows stays bounded however large the project grows."""
    from django.db import connection

    pairs = sorted({(band, value) for values in band_lists for band, value in enumerate(values)})
    if not pairs:
        return [[] for _ in band_lists]
    # One (band, value) pair per placeholder: an OR of lookups on the neardup_lookup index.
    placeholders = ", ".join(["(%s, %s)"] * len(pairs))
    sql = (
        "SELECT item_id, band, value FROM generation_nearduplicateband "  # noqa: S608
        "WHERE project_id = %s AND (band, value) IN (" + placeholders + ")"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, *(x for pair in pairs for x in pair)])
        holders: dict[tuple[int, int], list[int]] = {}
        for item_id, band, value in cursor.fetchall():
            holders.setdefault((band, value), []).append(item_id)
    found = []
    for values in band_lists:
        shared: dict[int, int] = {}
        for band, value in enumerate(values):
            for item_id in holders.get((band, value), ()):
                shared[item_id] = shared.get(item_id, 0) + 1
        ranked = sorted(
            (item_id for item_id, n in shared.items() if n >= MIN_SHARED_BANDS),
            key=lambda item_id: (-shared[item_id], item_id),
        )
        found.append(ranked[:MAX_CANDIDATES])
    return found


def index_item(*, project_id: int, item_id: int, band_values: list[int]) -> None:
    NearDuplicateBand.objects.bulk_create(
        [
            NearDuplicateBand(project_id=project_id, item_id=item_id, band=band, value=value)
            for band, value in enumerate(band_values)
        ],
        ignore_conflicts=True,
    )
