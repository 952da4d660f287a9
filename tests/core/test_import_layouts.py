"""The layouts public question sets come in, each written by the test itself (English and
Chinese), imported end to end into PostgreSQL."""

import json

import pytest

from medcot.imports.formats import FormatError, ImportOptions, parse_mapping, parse_seed_file
from medcot.imports.service import seed_file_import
from medcot.models import ImportBatch, Item

pytestmark = pytest.mark.django_db


def run(project, data: bytes, name: str, **options):
    return seed_file_import(
        project=project, data=data, file_name=name, options=ImportOptions(file_name=name, **options)
    )


def items(project):
    return {
        i.external_id: i
        for i in Item.objects.filter(project=project).select_related("current_version")
    }


# ------------------------------------------------------------------ JSON documents

ZH_CASES = {
    "version": "1.0",
    "data": [
        {
            "case": "患者，男，58岁。突发胸骨后压榨性疼痛2小时，伴大汗。",
            "questions": [
                {
                    "question": "最可能的诊断是？",
                    "options": {
                        "A": "急性心肌梗死",
                        "B": "胃食管反流",
                        "C": "气胸",
                        "D": "肋软骨炎",
                    },
                    "answer": "A",
                },
                {
                    "question": "首选的检查是？",
                    "options": ["心电图", "胃镜", "胸片", "腹部超声"],
                    "answer": ["A"],
                },
                {
                    "question": "首选的治疗药物是？",
                    "options": ["阿司匹林", "奥美拉唑", "布洛芬", "头孢曲松", "甲硝唑"],
                    "answer": "阿司匹林",
                },
            ],
        },
        {
            "case": "患儿，女，3岁。发热3天，皮疹1天。",
            "questions": [
                {
                    "question": "最可能的诊断是？\nA．麻疹\nB．风疹\nC．幼儿急疹\nD．水痘",
                    "answer": "C",
                }
            ],
        },
    ],
}


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty"])
def test_it_imports_a_chinese_json_document_with_case_groups(project, indent):
    data = json.dumps(ZH_CASES, ensure_ascii=False, indent=indent).encode()
    result = run(project, data, "cases.json")
    assert result.ok, result.errors
    assert result.batch.format == "json"
    found = sorted(
        Item.objects.filter(project=project).select_related("current_version"),
        key=lambda i: (i.group_id, i.group_order),
    )
    assert len(found) == 4
    groups = {}
    for item in found:
        groups.setdefault(item.group_id, []).append(item)
    assert sorted(len(g) for g in groups.values()) == [1, 3]
    chest = next(g for g in groups.values() if len(g) == 3)
    assert [i.group_order for i in chest] == [1, 2, 3]
    assert {i.case_text for i in chest} == {ZH_CASES["data"][0]["case"]}
    # Questions on a case are type S (best choice for a case summary) unless they say.
    assert {i.question_type for i in chest} == {"S"}
    assert [i.current_version.answer for i in chest] == ["A", "A", "A"]
    assert chest[2].current_version.option_e == "甲硝唑"
    assert {i.language for i in found} == {"zh"}
    rash = next(g for g in groups.values() if len(g) == 1)[0]
    # Options written into the stem with full-width dots are split out of it.
    assert rash.current_version.stem == "最可能的诊断是？"
    assert rash.current_version.options == {"A": "麻疹", "B": "风疹", "C": "幼儿急疹", "D": "水痘"}
    # Re-importing the same document is a no-op.
    again = run(project, data, "cases.json")
    assert again.ok and again.batch.created_count == 0 and again.batch.unchanged_count == 4


def test_it_finds_the_records_under_any_key_or_at_the_given_path(project):
    records = [
        {
            "qid": f"e{n}",
            "stem": f"Which nerve {n}?",
            "choices": ["a", "b", "c", "d"],
            "label": n % 4,
        }
        for n in range(8)
    ]
    doc = {"meta": {"name": "x", "tags": [{"k": "v"}]}, "example": records}
    result = run(project, json.dumps(doc).encode(), "set.json")
    assert result.ok, result.errors
    got = items(project)
    # label is a 0-based index: 0 appears, so 0 = A.
    assert got["e1"].current_version.answer == "B"
    assert got["e0"].current_version.answer == "A"

    two_lists = {"train": records, "test": [dict(r, qid=f"t{i}") for i, r in enumerate(records)]}
    with pytest.raises(FormatError, match="several lists of records"):
        parse_seed_file(json.dumps(two_lists).encode(), ImportOptions())
    parsed = parse_seed_file(json.dumps(two_lists).encode(), ImportOptions(records_path="test"))
    assert [r.external_id for r in parsed.records][:2] == ["t0", "t1"]
    with pytest.raises(FormatError, match="not in the file"):
        parse_seed_file(json.dumps(two_lists).encode(), ImportOptions(records_path="valid"))


def test_it_says_once_when_a_json_document_is_given_as_jsonl_and_the_reverse(project):
    document = json.dumps(
        {"data": [{"question": "q?", "options": ["a", "b", "c", "d"], "answer": "A"}] * 3}, indent=2
    )
    result = run(project, document.encode(), "doc.jsonl", format="medcot-jsonl")
    assert result.batch.state == ImportBatch.State.FAILED
    assert result.batch.error_count == 1
    assert "one JSON document, not JSON Lines" in result.errors[0].message

    lines = "\n".join(
        json.dumps(
            {"id": f"x{n}", "question": "q?", "options": ["a", "b", "c", "d"], "answer": "A"}
        )
        for n in range(30)
    )
    result = run(project, lines.encode(), "lines.json", format="json")
    assert result.batch.state == ImportBatch.State.FAILED
    assert result.batch.error_count == 1
    assert "JSON Lines" in result.errors[0].message
    # Detected, both go in.
    assert run(project, lines.encode(), "lines.json").ok


# ------------------------------------------------------------------ headerless CSV/TSV


def test_it_recognises_a_headerless_question_a_b_c_d_answer_csv(project):
    data = (
        b'"A 30-year-old woman, febrile: first test?",Blood culture,CT,MRI,ECG,A\n'
        b"Which vitamin is fat-soluble?,C,B1,K,B12,C\n"
    )
    result = run(project, data, "noheader.csv")
    assert result.ok, result.errors
    stems = {i.current_version.stem: i.current_version.answer for i in items(project).values()}
    assert stems == {
        "A 30-year-old woman, febrile: first test?": "A",
        "Which vitamin is fat-soluble?": "C",
    }


def test_it_reads_a_headerless_chinese_tsv_with_an_id_column(project):
    data = (
        "z1\t下列哪项是心绞痛的典型表现？\t胸痛\t腹痛\t头痛\t背痛\tA\n"
        "z2\t糖尿病的诊断标准？\t甲\t乙\t丙\t丁\tD\n"
    )
    result = run(project, data.encode(), "zh.tsv")
    assert result.ok, result.errors
    got = items(project)
    assert set(got) == {"z1", "z2"}
    assert got["z2"].current_version.answer == "D"
    assert got["z1"].language == "zh"


def test_it_maps_columns_by_position_with_the_first_row_as_data(project):
    # The first row would pass for a header ("question"), so the switch says it is data.
    data = b"7,question,yes,no,maybe,never,2\n8,Is it hot?,yes,no,maybe,never,4\n"
    mapping = parse_mapping("id=1,question=2,A=3,B=4,C=5,D=6,answer=7")
    result = run(project, data, "pos.csv", mapping=mapping, header="no", index_base="1")
    assert result.ok, result.errors
    got = items(project)
    assert got["7"].current_version.stem == "question"
    assert got["7"].current_version.answer == "B"
    assert got["8"].current_version.answer == "D"


def test_a_mapping_naming_a_missing_column_is_one_error_for_the_file(project):
    rows = "".join(f"q{n},Stem {n}?,a,b,c,d,A\n" for n in range(200))
    data = ("id,stem,w,x,y,z,key\n" + rows).encode()
    mapping = parse_mapping("id=id,question=stem,A=w,B=x,C=y,D=z,answer=solution")
    result = run(project, data, "m.csv", mapping=mapping)
    assert result.batch.error_count == 1
    assert "answer=solution" in result.errors[0].message
    by_position = parse_mapping("question=2,A=3,B=4,C=5,D=6,answer=9")
    result = run(project, data, "m.csv", mapping=by_position, header="no")
    assert result.batch.error_count == 1
    assert "answer=9" in result.errors[0].message


# ------------------------------------------------------------------ answers and options


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        (["B"], "B"),
        ("two", "B"),
        ("答案：B", "B"),
    ],
)
def test_it_reads_the_answer_shapes_found_in_the_wild(answer, expected):
    record = {"question": "Which?", "options": ["one", "two", "three", "four"], "answer": answer}
    parsed = parse_seed_file(json.dumps(record).encode() + b"\n", ImportOptions())
    assert not parsed.errors, parsed.errors.kept
    assert parsed.records[0].answer == expected


def test_it_decides_the_index_base_from_the_file():
    def parse(answers, **kw):
        lines = [
            json.dumps(
                {"id": f"i{n}", "question": f"Q{n}?", "options": ["a", "b", "c", "d"], "answer": a}
            )
            for n, a in enumerate(answers)
        ]
        return parse_seed_file("\n".join(lines).encode(), ImportOptions(**kw))

    assert [r.answer for r in parse([0, 1, 3]).records] == ["A", "B", "D"]
    assert [r.answer for r in parse([1, 4, 2]).records] == ["A", "D", "B"]
    ambiguous = parse([1, 2, 2])
    assert ambiguous.errors.total == 3
    assert "count from 0 or from 1" in ambiguous.errors.kept[0].message
    assert [r.answer for r in parse([1, 2, 2], index_base="1").records] == ["A", "B", "B"]


def test_it_names_the_field_of_an_ambiguous_or_unreadable_answer():
    records = [
        {"id": "a", "question": "Q?", "options": ["same", "same", "x", "y"], "answer": "same"},
        {"id": "b", "question": "Q?", "options": ["a", "b", "c", "d"], "answer": ["A", "C"]},
        {"id": "c", "question": "Q?", "options": ["a", "b", "c", "d"], "answer": "maybe"},
    ]
    data = "\n".join(json.dumps(r) for r in records).encode()
    parsed = parse_seed_file(data, ImportOptions())
    messages = [e.message for e in parsed.errors.kept]
    assert len(messages) == 3
    assert all(m.startswith("answer:") for m in messages)


@pytest.mark.parametrize(
    "stem",
    [
        "Which drug?\nA. Aspirin\nB. Heparin\nC. Insulin\nD. Warfarin",
        "Which drug?\n(A) Aspirin\n(B) Heparin\n(C) Insulin\n(D) Warfarin",
        "Which drug?\nA) Aspirin\nB) Heparin\nC) Insulin\nD) Warfarin",
        "哪种药物？\n（A）阿司匹林\n（B）肝素\n（C）胰岛素\n（D）华法林",
        "哪种药物？\nA．阿司匹林\nB．肝素\nC．胰岛素\nD．华法林",
        "Which drug? A. Aspirin B. Heparin C. Insulin D. Warfarin",
    ],
)
def test_it_splits_options_written_into_the_stem(stem):
    record = {"question": stem, "answer": "B"}
    parsed = parse_seed_file(json.dumps(record, ensure_ascii=False).encode(), ImportOptions())
    assert not parsed.errors, parsed.errors.kept
    r = parsed.records[0]
    assert r.stem in {"Which drug?", "哪种药物？"}
    assert len(r.options) == 4 and r.answer == "B"
    assert r.options["B"] in {"Heparin", "肝素"}


def test_it_reads_options_as_columns_a_dict_with_odd_keys_and_labelled_lists():
    data = json.dumps(
        [
            {
                "id": 1,
                "question": "Q1?",
                "option_a": "w",
                "option_b": "x",
                "option_c": "y",
                "option_d": "z",
                "answer": "D",
            },
            {
                "id": 2,
                "question": "Q2?",
                "options": {"(A)": "w", "(B)": "x", "(C)": "y", "(D)": "z"},
                "answer": "D",
            },
            {
                "id": 3,
                "question": "Q3?",
                "options": ["A. w", "B. x", "C. y", "D. z"],
                "answer": "D",
            },
        ]
    ).encode()
    parsed = parse_seed_file(data, ImportOptions())
    assert not parsed.errors, parsed.errors.kept
    assert {tuple(r.options.values()) for r in parsed.records} == {("w", "x", "y", "z")}


def test_a_group_sharing_one_option_list_imports_as_linked_items(project):
    doc = {
        "groups": [
            {
                "id": "B-1",
                "options": {
                    "A": "Amiodarone",
                    "B": "Atropine",
                    "C": "Adenosine",
                    "D": "Digoxin",
                    "E": "Verapamil",
                },
                "questions": [
                    {"question": "First-line for stable SVT?", "answer": "C"},
                    {"question": "Symptomatic bradycardia?", "answer": "B"},
                ],
            }
        ]
    }
    result = run(project, json.dumps(doc).encode(), "shared.json")
    assert result.ok, result.errors
    got = items(project)
    assert set(got) == {"B-1-1", "B-1-2"}
    assert {i.group_id for i in got.values()} == {"B-1"}
    assert got["B-1-2"].current_version.answer == "B"
    assert got["B-1-2"].current_version.option_e == "Verapamil"
    assert got["B-1-2"].question_type == "K"  # a shared option list is no case


def test_a_flat_csv_with_a_case_column_links_its_rows(project):
    data = (
        b"id,case,question,A,B,C,D,answer\n"
        b'c1,"A 60-year-old smoker with haemoptysis.",Most likely diagnosis?,'
        b"TB,Lung cancer,PE,Bronchitis,B\n"
        b'c2,"A 60-year-old smoker with haemoptysis.",Next test?,CT chest,ECG,Echo,EEG,A\n'
        b"c3,,Unrelated?,a,b,c,d,A\n"
    )
    result = run(project, data, "flat.csv")
    assert result.ok, result.errors
    got = items(project)
    assert got["c1"].group_id and got["c1"].group_id == got["c2"].group_id
    assert got["c1"].case_text == "A 60-year-old smoker with haemoptysis."
    assert got["c3"].group_id == ""


# ------------------------------------------------------------------ duplicates and source


def test_byte_identical_records_collapse_with_a_warning(project):
    a = {"id": "d1", "question": "Q?", "options": ["a", "b", "c", "d"], "answer": "A"}
    b = {"id": "d2", "question": "R?", "options": ["a", "b", "c", "d"], "answer": "B"}
    lines = [json.dumps(x) for x in (a, b, a, b, a)]
    result = run(project, "\n".join(lines).encode(), "dup.jsonl")
    assert result.ok, result.errors
    assert result.batch.created_count == 2
    assert result.batch.warning_count == 3
    assert result.batch.warnings[0]["message"] == "line 3 repeats line 1; kept once"
    # A different record under an existing id is still an error.
    changed = [json.dumps(a), json.dumps(dict(a, answer="C"))]
    result = run(project, "\n".join(changed).encode(), "dup2.jsonl")
    assert not result.ok
    assert "duplicate id 'd1'" in result.errors[0].message


def test_the_given_source_wins_over_a_detected_one(project):
    record = {
        "question": "Q?",
        "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
        "answer": "B",
        "answer_idx": "A",
        "meta_info": "step1",
    }
    result = run(
        project, json.dumps(record).encode(), "medqa.jsonl", source="Our board review 2025"
    )
    assert result.ok, result.errors
    assert result.batch.format == "medqa-jsonl"
    item = Item.objects.get(project=project)
    assert item.source == "Our board review 2025"
    assert item.current_version.answer == "A"


def test_the_documented_example_file_imports_as_documented(project):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "case-groups.json"
    result = run(project, path.read_bytes(), path.name)
    assert result.ok, result.errors
    got = items(project)
    assert set(got) == {"case-001-1", "case-001-2", "shared-B1-1", "shared-B1-2"}
    assert got["case-001-2"].group_id == "case-001" and got["case-001-2"].group_order == 2
    assert got["case-001-2"].current_version.answer == "A"  # 0-based: 0 is A
    assert got["shared-B1-1"].current_version.option_e == "Verapamil"
    assert got["shared-B1-2"].case_text == ""


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        # ARC / OpenBookQA on the Hub: the stem nested, options as label and text lists.
        (
            json.dumps(
                {
                    "id": "arc-1",
                    "question": {"stem": "Which gas do plants take in?"},
                    "choices": {"label": ["A", "B", "C", "D"], "text": ["O2", "N2", "CO2", "H2"]},
                    "answerKey": "C",
                }
            ).encode(),
            "arc.jsonl",
            ("Which gas do plants take in?", "C", "CO2"),
        ),
        # A byte-order mark before JSON Lines.
        (
            b"\xef\xbb\xbf"
            + json.dumps(
                {"question": "Q?", "options": ["a", "b", "c", "d"], "answer": "D"}
            ).encode(),
            "bom.jsonl",
            ("Q?", "D", "d"),
        ),
        # Chinese column names.
        (
            "题干,选项A,选项B,选项C,选项D,答案\n下列哪项正确？,甲,乙,丙,丁,B\n".encode(),
            "zh.csv",
            ("下列哪项正确？", "B", "乙"),
        ),
        # Spreadsheet headers, and a key written "Ans: C".
        (
            b'"Question","Option A","Option B","Option C","Option D","Correct Answer"\n'
            b'"Which?","a","b","c","d","Ans: C"\n',
            "sheet.csv",
            ("Which?", "C", "c"),
        ),
        # Options run together in one field, and the key given as its text.
        (
            json.dumps(
                {"question": "Which?", "options": "A) x B) y C) z D) w", "answer": "y"}
            ).encode(),
            "inline.jsonl",
            ("Which?", "B", "y"),
        ),
        # Semicolons.
        (b"question;A;B;C;D;answer\nWhich?;a;b;c;d;D\n", "semi.csv", ("Which?", "D", "d")),
    ],
)
def test_it_reads_more_layouts_from_the_wild(project, data, name, expected):
    result = run(project, data, name)
    assert result.ok, result.errors
    version = Item.objects.get(project=project).current_version
    assert (version.stem, version.answer, version.answer_text) == expected


def test_a_record_longer_than_a_megabyte_is_still_one_line_of_json_lines():
    vignette = "A long case. " * 100_000  # 1.3 MB on one line
    records = [
        {
            "id": f"long{n}",
            "question": vignette + f"Q{n}?",
            "options": ["a", "b", "c", "d"],
            "answer": "B",
        }
        for n in range(2)
    ]
    data = "\n".join(json.dumps(r) for r in records).encode()
    for chunk in (data, data.split(b"\n")[0]):
        parsed = parse_seed_file(chunk, ImportOptions())
        assert parsed.container == "jsonl" and not parsed.errors, parsed.errors.kept[:2]
        assert parsed.records[0].answer == "B"
