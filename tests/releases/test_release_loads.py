"""Every file of a built release loads as it is with pyarrow, pandas and Hugging Face
`datasets`, and agrees with the database."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from medcot.lifecycle import Status
from medcot.models import Item
from review.models import RubricScore
from review.releases.models import ReleaseItem
from review.releases.services import release_build, release_create, release_directory
from review.releases.writers import FIELD_NAMES

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(project, admin_user, make_item, expert_a, expert_b):
    for i in range(12):
        make_item(
            specialty=["Cardiology", "Neurology", "心内科"][i % 3],
            language="zh" if i % 4 == 0 else "en",
            modified=i % 5 == 0,
            attempts=5 if i % 3 == 0 else 2,
            panel_scores={expert_a: [2, 1, 2, 2, 1], expert_b: [2, 2, 1, 2, 0]}
            if i % 3 == 0
            else None,
        )
    make_item(status=Status.DISCARDED)
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    release = release_build(release_id=release.pk)
    assert release.state == "built", release.error
    return release


def _expected(release):
    ids = list(
        ReleaseItem.objects.filter(release=release)
        .order_by("item_id")
        .values_list("item_id", flat=True)
    )
    items = {i.pk: i for i in Item.objects.filter(pk__in=ids).select_related("current_version")}
    return ids, items


def test_it_loads_with_pyarrow_and_pandas_and_matches_the_database(built):
    directory = release_directory(built)
    ids, items = _expected(built)
    assert len(ids) == 12 == built.item_count

    table = pq.read_table(directory / "data.parquet")
    assert table.num_rows == 12
    assert table.column_names == list(FIELD_NAMES)
    assert table.column("item_id").to_pylist() == ids

    frames = {
        "parquet": pd.read_parquet(directory / "data.parquet"),
        "jsonl": pd.read_json(directory / "data.jsonl", lines=True),
        "csv": pd.read_csv(directory / "data.csv", keep_default_na=False),
    }
    for name, frame in frames.items():
        assert list(frame["item_id"]) == ids, name
        for row in frame.itertuples():
            item = items[row.item_id]
            assert row.question == item.current_version.stem, name
            assert row.answer == item.current_version.answer, name
            assert row.cot == item.current_version.cot, name
            assert row.specialty == item.specialty, name
            assert row.revision_status == item.revision_status, name
            assert int(row.consensus_size) == 2, name
    assert list(frames["csv"]["option_a"]) == [items[i].current_version.option_a for i in ids]

    scored = set(RubricScore.objects.filter(item_id__in=ids).values_list("item_id", flat=True))
    for row in frames["parquet"].itertuples():
        assert (len(row.rubric_scores) == 2) == (row.item_id in scored)

    chat = pd.read_json(directory / "chat.jsonl", lines=True)
    assert list(chat["item_id"]) == ids
    assert all(len(m) == 3 for m in chat["messages"])


def test_it_loads_with_the_datasets_library_through_the_card(built, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    directory = str(release_directory(built))
    ids, items = _expected(built)

    # The YAML header's configs: the default config is data.jsonl, "chat" the SFT file.
    default = datasets.load_dataset(
        directory, "default", split="train", cache_dir=str(tmp_path / "c")
    )
    assert default.num_rows == 12
    assert default["item_id"] == ids
    assert default.column_names == list(FIELD_NAMES)
    first = default[0]
    assert first["question"] == items[ids[0]].current_version.stem
    assert first["options"]["E"] is None

    chat = datasets.load_dataset(directory, "chat", split="train", cache_dir=str(tmp_path / "c"))
    assert chat.num_rows == 12
    assert chat[0]["messages"][2]["reasoning_content"] == items[ids[0]].current_version.cot

    as_parquet = datasets.load_dataset(
        "parquet",
        data_files=f"{directory}/data.parquet",
        split="train",
        cache_dir=str(tmp_path / "c"),
    )
    assert as_parquet["item_id"] == ids
    assert as_parquet[0] == first
    as_csv = datasets.load_dataset(
        "csv", data_files=f"{directory}/data.csv", split="train", cache_dir=str(tmp_path / "c")
    )
    assert as_csv["item_id"] == ids
    assert [json.loads(s) for s in as_csv["consensus_experts"]] == default["consensus_experts"]
