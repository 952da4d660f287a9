"""Near-duplicate detection for synthesized questions, within a family and across a project.

Each question's text (stem and options) is cut into character 3-grams, which works the same
for Chinese and English. Each 3-gram is packed into one 64-bit key (three code points of 21
bits), so a text becomes a sorted array of distinct keys. A one-permutation MinHash (each key
mixed once, the minimum kept per bin) gives 32 values, grouped into 8 bands of 4; items
sharing any band value are candidates, and a candidate is a near-duplicate when the Jaccard
similarity of the actual 3-gram sets reaches the threshold. The bands are stored
(`NearDuplicateBand`), so checking a new question against tens of thousands costs a handful
of indexed lookups.

The arithmetic runs in NumPy: an expansion checks a dozen new questions against up to twenty
candidates each, and in pure Python hashing and comparing those 3-gram sets was the largest
part of an expansion's CPU time (about 0.3 ms per question to sign, 0.1 ms per comparison).
The band values must stay the same from one release to the next, since they are stored:
changing `keys`, `signature` or `bands` needs a migration that recomputes them (see
`generation/migrations/0003_neardup_bands_numpy.py`).
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict

import numpy as np

SHINGLE = 3
BINS = 32
ROWS = 4
BANDS = BINS // ROWS
THRESHOLD = 0.8
MIN_SHARED_BANDS = 2
MAX_CANDIDATES = 20
_NOISE = re.compile(r"[\W_]+", re.UNICODE)
_EMPTY = np.iinfo(np.uint64).max
# splitmix64's finaliser: a cheap, well-mixed 64-bit hash of a key.
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NOISE.sub("", text)


def question_text(stem: str, options: dict[str, str]) -> str:
    # Options are sorted by text so that reordering them does not disguise a duplicate.
    return stem + "|" + "|".join(sorted(options.values()))


def keys(text: str) -> np.ndarray:
    """The distinct 3-grams of the normalised text, each packed into a uint64, sorted. A text
    shorter than three characters is one key of its own (padded with zeros, which never occur
    in a normalised text), and an empty text has none."""
    points = np.frombuffer(normalise(text).encode("utf-32-le"), dtype=np.uint32)
    points = points.astype(np.uint64)
    if points.size < SHINGLE:
        if not points.size:
            return points
        points = np.concatenate([points, np.zeros(SHINGLE - points.size, dtype=np.uint64)])
    packed = (points[:-2] << np.uint64(42)) | (points[1:-1] << np.uint64(21)) | points[2:]
    return np.unique(packed)


def _mix(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint64(30))
    values = values * _MIX_1
    values = values ^ (values >> np.uint64(27))
    values = values * _MIX_2
    return values ^ (values >> np.uint64(31))


def signature(text_keys: np.ndarray) -> np.ndarray:
    """One-permutation MinHash: the smallest mixed key in each of BINS bins."""
    mins = np.full(BINS, _EMPTY, dtype=np.uint64)
    if text_keys.size:
        hashed = _mix(text_keys)
        np.minimum.at(mins, (hashed % np.uint64(BINS)).astype(np.intp), hashed)
    return mins


def bands(text_keys: np.ndarray) -> list[int]:
    """The BANDS band values of a text, as signed 64-bit integers (PostgreSQL's bigint)."""
    chunks = signature(text_keys).astype("<u8").tobytes()
    width = ROWS * 8
    return [
        int.from_bytes(
            hashlib.blake2b(chunks[i * width : (i + 1) * width], digest_size=8).digest(),
            "big",
            signed=True,
        )
        for i in range(BANDS)
    ]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of distinct keys."""
    if not a.size and not b.size:
        return 1.0
    if not a.size or not b.size:
        return 0.0
    shared = np.intersect1d(a, b, assume_unique=True).size
    return shared / (a.size + b.size - shared)


class KeyCache:
    """The keys of items' current versions, by (item id, version id), least recently used
    dropped first. The same few items turn up as candidates for question after question in a
    run; a version is never edited (a change is a new version), so an entry never goes stale.
    About 2 KB an entry."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[int, int], value: np.ndarray) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


candidate_keys = KeyCache()


def candidates_many(*, project_id: int, band_lists: list[list[int]]) -> list[list[int]]:
    """For each question (a model reply's worth, in one indexed query): the ids of items in
    the project sharing at least MIN_SHARED_BANDS bands, most similar first, at most
    MAX_CANDIDATES.

    Two questions with Jaccard similarity 0.8 share each band with probability 0.8^4 ≈ 0.41, so
    requiring two of eight keeps ~90% of them at the threshold (and nearly all above it) while
    unrelated questions that share boilerplate rarely qualify: the exact comparison that
    follows stays bounded however large the project grows. The database counts and ranks the
    shared bands, so only the candidates themselves come back (with boilerplate-heavy text a
    reply's bands can be held by a thousand rows)."""
    from django.db import connection

    found: list[list[int]] = [[] for _ in band_lists]
    triples = [
        (question, band, value)
        for question, values in enumerate(band_lists)
        for band, value in enumerate(values)
    ]
    if not triples:
        return found
    with connection.cursor() as cursor:
        cursor.execute(*_candidates_query(project_id, triples))
        for question, item_id in cursor.fetchall():
            found[question].append(item_id)
    return found


def _candidates_query(project_id: int, triples: list[tuple[int, int, int]]) -> tuple[str, list]:
    """One indexed lookup per (band, value) pair, then shared bands counted per question and
    item, ranked, and cut at MAX_CANDIDATES. On PostgreSQL the lookups are lateral, behind an
    optimisation fence, so the plan stays one index probe per pair even while the table's
    statistics are stale (a fresh project's bands grow from nothing during its first run,
    before autovacuum has analysed them): otherwise the planner may scan every band of the
    project and test each row against the whole list, which took 40-60 ms a reply at 3,000
    items. The pairs go in as three arrays, so the statement's text is the same for every
    reply: psycopg parses a statement's placeholders once and caches the result, but only for
    statements of up to 50 parameters, and a reply's ~100 pairs as VALUES rows cost ~1 ms of
    the worker's CPU to re-parse each time."""
    from django.db import connection

    ranked = (
        "SELECT question, item_id FROM ("
        "SELECT q.question, n.item_id, row_number() OVER ("
        "PARTITION BY q.question ORDER BY count(*) DESC, n.item_id) AS place "
        "FROM {holders} GROUP BY q.question, n.item_id HAVING count(*) >= %s"
        ") ranked WHERE place <= %s ORDER BY question, place"
    )
    limits = [MIN_SHARED_BANDS, MAX_CANDIDATES]
    if connection.vendor == "postgresql":
        questions, bands, values = (list(column) for column in zip(*triples, strict=True))
        holders = (
            "unnest(%s::int[], %s::int[], %s::bigint[]) AS q(question, band, value) "
            "CROSS JOIN LATERAL (SELECT item_id FROM generation_nearduplicateband b "
            "WHERE b.project_id = %s AND b.band = q.band AND b.value = q.value OFFSET 0) n"
        )
        return ranked.format(holders=holders), [questions, bands, values, project_id, *limits]
    rows = ", ".join(["(%s, %s, %s)"] * len(triples))
    holders = (
        "q JOIN generation_nearduplicateband n "
        "ON n.project_id = %s AND n.band = q.band AND n.value = q.value"
    )
    sql = f"WITH q(question, band, value) AS (VALUES {rows}) " + ranked.format(holders=holders)
    return sql, [*(x for triple in triples for x in triple), project_id, *limits]


def index_item(*, project_id: int, item_id: int, band_values: list[int]) -> None:
    """Store an item's bands (once: indexing it again changes nothing)."""
    from django.db import connection

    rows = ", ".join(["(%s, %s, %s, %s)"] * len(band_values))

    params = [
        x for band, value in enumerate(band_values) for x in (project_id, item_id, band, value)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO generation_nearduplicateband (project_id, item_id, band, value) "  # noqa: S608
            f"VALUES {rows} ON CONFLICT (item_id, band) DO NOTHING",
            params,
        )
