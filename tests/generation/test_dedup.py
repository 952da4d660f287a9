"""Near-duplicate detection: the 3-gram keys, MinHash bands, exact Jaccard, the candidate
lookup and the migration that recomputes stored bands."""

import importlib

import numpy as np
import pytest
from django.apps import apps
from hypothesis import given, settings
from hypothesis import strategies as st

from generation import dedup
from generation.models import NearDuplicateBand
from tests.factories import ItemFactory, ProjectFactory


def reference_jaccard(a: str, b: str) -> float:
    """The definition, on sets of 3-gram strings, as the module computed it before NumPy."""

    def grams(text: str) -> set[str]:
        clean = dedup.normalise(text)
        if len(clean) <= dedup.SHINGLE:
            return {clean} if clean else set()
        return {clean[i : i + dedup.SHINGLE] for i in range(len(clean) - dedup.SHINGLE + 1)}

    x, y = grams(a), grams(b)
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


def test_keys_are_the_distinct_3_grams_of_the_normalised_text():
    keys = dedup.keys("Abc-abc ABC")
    # "abcabcabc" has three distinct 3-grams: abc, bca, cab.
    assert keys.dtype == np.uint64 and keys.size == 3
    assert np.all(keys[:-1] < keys[1:])
    assert np.array_equal(dedup.keys("ＡＢＣ、abc abc"), keys)  # NFKC, case and punctuation


def test_short_and_empty_texts():
    assert dedup.keys("").size == 0
    assert dedup.keys("...").size == 0
    assert dedup.keys("a").size == 1 and dedup.keys("ab").size == 1
    assert not np.array_equal(dedup.keys("a"), dedup.keys("ab"))
    assert dedup.jaccard(dedup.keys(""), dedup.keys("")) == 1.0
    assert dedup.jaccard(dedup.keys(""), dedup.keys("abcd")) == 0.0


def test_chinese_text_is_cut_into_character_3_grams():
    text = "患者男，54岁，胸痛40分钟。"
    assert dedup.keys(text).size == len(dedup.normalise(text)) - 2
    changed = text.replace("54", "55")
    # "患者男54岁胸痛40分钟": ten 3-grams, three of which the changed digit replaces.
    assert dedup.jaccard(dedup.keys(text), dedup.keys(changed)) == pytest.approx(7 / 13)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="abcdeAB .-1234胸痛发热", max_size=60),
    st.text(alphabet="abcdeAB .-1234胸痛发热", max_size=60),
)
def test_jaccard_equals_the_set_definition(a, b):
    assert dedup.jaccard(dedup.keys(a), dedup.keys(b)) == pytest.approx(reference_jaccard(a, b))


def test_bands_ignore_option_order_and_are_stable():
    stem = "A 54-year-old man has crushing chest pain for 40 minutes. What is the next step?"
    one = dedup.question_text(stem, {"A": "Aspirin", "B": "Heparin", "C": "Morphine"})
    other = dedup.question_text(stem, {"A": "Morphine", "B": "Aspirin", "C": "Heparin"})
    bands = dedup.bands(dedup.keys(one))
    assert bands == dedup.bands(dedup.keys(other))
    assert len(bands) == dedup.BANDS
    assert all(-(2**63) <= value < 2**63 for value in bands)
    # Stored band values must not change between releases without a migration that
    # recomputes them (generation/migrations/0003_neardup_bands_numpy.py): this pins them.
    assert dedup.bands(dedup.keys("abcdefghij"))[:2] == [
        6574885282086013588,
        -8033146915168934707,
    ]


def test_a_near_duplicate_shares_bands_and_an_unrelated_question_does_not():
    stem = (
        "A 67-year-old woman presents to the emergency department with fever and productive "
        "cough for 3 days. Temperature is 38.9 °C, pulse 112/min. What is the diagnosis?"
    )
    options = {"A": "Pneumonia", "B": "Pulmonary embolism", "C": "Heart failure"}
    base = dedup.bands(dedup.keys(dedup.question_text(stem, options)))
    near = dedup.bands(dedup.keys(dedup.question_text(stem.replace("112", "113"), options)))
    unrelated = dedup.bands(
        dedup.keys(
            dedup.question_text(
                "Which enzyme deficiency causes phenylketonuria in newborns screened at birth?",
                {"A": "Phenylalanine hydroxylase", "B": "Tyrosinase", "C": "Homogentisate"},
            )
        )
    )
    shared = sum(x == y for x, y in zip(base, near, strict=True))
    assert shared >= dedup.MIN_SHARED_BANDS
    assert sum(x == y for x, y in zip(base, unrelated, strict=True)) == 0


def test_the_key_cache_drops_the_least_recently_used():
    cache = dedup.KeyCache(size=2)
    cache.put((1, 1), dedup.keys("one"))
    cache.put((2, 2), dedup.keys("two"))
    assert cache.get((1, 1)) is not None  # now the most recent
    cache.put((3, 3), dedup.keys("three"))
    assert cache.get((2, 2)) is None
    assert cache.get((1, 1)) is not None and cache.get((3, 3)) is not None


@pytest.mark.django_db
def test_candidates_are_items_of_the_project_sharing_two_bands():
    project, elsewhere = ProjectFactory(), ProjectFactory()
    holder = ItemFactory(project=project)
    stranger = ItemFactory(project=elsewhere)
    values = [1000 + band for band in range(dedup.BANDS)]
    dedup.index_item(project_id=project.pk, item_id=holder.pk, band_values=values)
    dedup.index_item(project_id=elsewhere.pk, item_id=stranger.pk, band_values=values)
    # Indexing again changes nothing.
    dedup.index_item(project_id=project.pk, item_id=holder.pk, band_values=values)
    assert NearDuplicateBand.objects.filter(item=holder).count() == dedup.BANDS

    two_shared = [values[0], values[1], *range(9000, 9000 + dedup.BANDS - 2)]
    one_shared = [values[0], *range(8000, 8000 + dedup.BANDS - 1)]
    found = dedup.candidates_many(project_id=project.pk, band_lists=[two_shared, one_shared])
    assert found == [[holder.pk], []]


@pytest.mark.django_db
def test_the_migration_recomputes_stored_bands_from_each_items_text():
    project = ProjectFactory()
    item = ItemFactory(project=project)
    for band in range(dedup.BANDS):
        NearDuplicateBand.objects.create(project=project, item=item, band=band, value=band)
    migration = importlib.import_module("generation.migrations.0003_neardup_bands_numpy")
    migration.recompute(apps, None)
    version = item.current_version
    expected = dedup.bands(dedup.keys(dedup.question_text(version.stem, version.options)))
    stored = list(
        NearDuplicateBand.objects.filter(item=item).order_by("band").values_list("value", flat=True)
    )
    assert stored == expected
