"""The release writers on plain records: one pass, every format, deterministic bytes."""

import csv
import io
import json
import zipfile

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from review.releases.diff import diff_summary, release_diff
from review.releases.writers import (
    CSV_COLUMNS,
    FIELD_NAMES,
    RecordError,
    ReleaseWriter,
    chat_record,
    csv_line,
    file_sha256,
    release_files,
    write_checksums,
    write_records,
    write_zip,
)


def record(item_id: int, **changes) -> dict:
    base = {
        "item_id": item_id,
        "external_id": f"q-{item_id}",
        "seed_family_id": item_id - item_id % 10 or item_id,
        "seed_family_external_id": f"q-{item_id - item_id % 10 or item_id}",
        "group_id": f"case-{item_id // 3}" if item_id % 4 == 0 else None,
        "group_order": item_id % 3 + 1 if item_id % 4 == 0 else None,
        "case_text": "患者，男，45岁。" if item_id % 4 == 0 else None,
        "kind": "seed" if item_id % 10 == 0 else "synthetic",
        "question_type": "K",
        "specialty": "心内科" if item_id % 2 else "Neurology",
        "cognitive_level": "recall" if item_id % 3 else None,
        "difficulty": "hard",
        "language": "zh" if item_id % 2 else "en",
        "question": f'Question {item_id}, with "quotes", a comma\nand a newline',
        "options": {"A": "Aspirin", "B": "Heparin", "C": "Rest", "D": "=SUM(A1)", "E": None},
        "answer": "A",
        "answer_text": "Aspirin",
        "cot": f"Step 1 for {item_id}. A is right; B, C and D are not.",
        "version": 1,
        "revision_status": "unrevised",
        "first_pass_result": "pass",
        "first_pass_score": 1,
        "reanswer_attempts": 5,
        "first_correct_attempt": None,
        "escalated": True,
        "rubric_scores": [
            {
                "expert": "x-aa",
                "round": 1,
                "medical_correctness": 2,
                "reasoning_structure": 1,
                "information_sufficiency": 2,
                "terminology_clarity": 2,
                "clinical_utility": 0,
            }
        ],
        "consensus_size": 2,
        "consensus_experts": ["x-aa", "x-bb"],
        "machine_judge_scores": [],
        "verdict_confidence": 0.987 if item_id % 2 else None,
        "n_verdicts": 3 if item_id % 2 else None,
    }
    base.update(changes)
    return base


def test_it_writes_every_format_with_the_same_records(tmp_path):
    records = [record(i) for i in range(1, 12)]
    assert write_records(tmp_path, iter(records), row_group=4) == 11

    lines = (tmp_path / "data.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records

    table = pq.read_table(tmp_path / "data.parquet")
    assert table.column_names == list(FIELD_NAMES)
    assert table.to_pylist() == records
    # Row groups are written as they fill, not all at the end.
    assert pq.ParquetFile(tmp_path / "data.parquet").num_row_groups == 3

    with open(tmp_path / "data.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["question"] == records[0]["question"]
    assert rows[0]["option_d"] == "=SUM(A1)"
    assert rows[0]["option_e"] == ""
    assert rows[0]["escalated"] == "true"
    assert json.loads(rows[0]["rubric_scores"]) == records[0]["rubric_scores"]

    chats = [json.loads(x) for x in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert len(chats) == 11
    assert chats[0] == chat_record(records[0])


def test_it_builds_chat_messages_with_the_reasoning_and_the_answer():
    chat = chat_record(record(2))
    _system, user, assistant = chat["messages"]
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert "A. Aspirin\nB. Heparin\nC. Rest\nD. =SUM(A1)" in user["content"]
    assert "E." not in user["content"]
    assert assistant["reasoning_content"] == record(2)["cot"]
    assert assistant["content"].endswith("Answer: A. Aspirin")
    assert chat_record(record(1))["messages"][2]["content"].endswith("答案：A. Aspirin")


def test_it_gives_identical_bytes_for_identical_records(tmp_path):
    for name in ("one", "two"):
        write_records(tmp_path / name, (record(i) for i in range(1, 30)), row_group=7)
        names = release_files(tmp_path / name)
        write_checksums(tmp_path / name, names)
        write_zip(
            tmp_path / name / "r.zip", tmp_path / name, [*names, "checksums.sha256"], prefix="p"
        )
    for name in (
        "data.jsonl",
        "data.csv",
        "data.parquet",
        "chat.jsonl",
        "checksums.sha256",
        "r.zip",
    ):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    with zipfile.ZipFile(tmp_path / "one" / "r.zip") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [
            "p/chat.jsonl",
            "p/checksums.sha256",
            "p/data.csv",
            "p/data.jsonl",
            "p/data.parquet",
        ]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert archive.testzip() is None


def test_it_writes_checksums_that_sha256sum_would_accept(tmp_path):
    write_records(tmp_path, [record(1)])
    info = write_checksums(tmp_path, ["data.jsonl", "data.csv"])
    lines = (tmp_path / "checksums.sha256").read_text().splitlines()
    assert lines == [
        f"{info['data.csv']['sha256']}  data.csv",
        f"{info['data.jsonl']['sha256']}  data.jsonl",
    ]
    assert info["data.jsonl"]["bytes"] == (tmp_path / "data.jsonl").stat().st_size


def test_it_refuses_records_out_of_order_or_with_other_fields(tmp_path):
    with pytest.raises(RecordError, match="increasing item id"):
        write_records(tmp_path / "a", [record(2), record(1)])
    bad = record(1)
    del bad["cot"]
    with pytest.raises(RecordError, match="schema"):
        write_records(tmp_path / "b", [bad])


def test_it_diffs_two_releases_item_by_item(tmp_path):
    write_records(tmp_path / "old", [record(1), record(2), record(3), record(5)])
    write_records(
        tmp_path / "new",
        [record(2), record(3, cot="Better.", version=2), record(4), record(5)],
    )
    changes = list(release_diff(tmp_path / "old" / "data.jsonl", tmp_path / "new" / "data.jsonl"))
    assert changes == [
        {"change": "removed", "item_id": 1},
        {"change": "changed", "item_id": 3, "fields": ["cot", "version"]},
        {"change": "added", "item_id": 4},
    ]
    assert diff_summary(iter(changes)) == {
        "added": 1,
        "removed": 1,
        "changed": 1,
        "fields": {"cot": 1, "version": 1},
    }


cells = st.one_of(
    st.none(), st.integers(), st.text(alphabet=st.characters(blacklist_categories=["Cs"]))
)


@given(st.lists(cells, min_size=1, max_size=8))
def test_it_writes_csv_lines_that_read_back_and_match_the_csv_module(values):
    line = csv_line(values)
    [parsed] = list(csv.reader(io.StringIO(line.decode("utf-8"), newline="")))
    assert parsed == ["" if v is None else str(v) for v in values]
    if not any(isinstance(v, str) and "\r" in v for v in values):
        # The csv module leaves a lone carriage return unquoted (it then reads it back as a
        # line break); everywhere else the bytes are the same.
        expected = io.StringIO()
        csv.writer(expected, lineterminator="\n").writerow(values)
        assert line == expected.getvalue().encode("utf-8")


def test_it_hashes_the_data_files_while_writing_them(tmp_path):
    with ReleaseWriter(tmp_path, row_group=3) as writer:
        for i in range(1, 8):
            writer.write(record(i))
    for name, info in writer.digests.items():
        assert info == {
            "sha256": file_sha256(tmp_path / name),
            "bytes": (tmp_path / name).stat().st_size,
        }, name
    assert pq.read_table(tmp_path / "data.parquet").num_rows == 7
