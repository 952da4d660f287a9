import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction

from medcot.imports.formats import FormatError, ImportOptions, detect_format, parse_mapping
from medcot.imports.service import seed_file_import
from medcot.lifecycle import Status
from medcot.models import Event, ImportBatch, Item, ItemVersion
from tests.conftest import SHARED_DATA

CMMLU_FILES = sorted((SHARED_DATA / "cmmlu_medical").glob("*.csv"))
MEDQA_FILE = SHARED_DATA / "medqa_usmle" / "medqa_test.jsonl"

pytestmark = pytest.mark.skipif(
    not MEDQA_FILE.exists(), reason="shared/data is not beside the repo"
)


def run_import(project, data: bytes, name: str = "upload.jsonl", **options):
    return seed_file_import(
        project=project,
        data=data,
        file_name=name,
        options=ImportOptions(file_name=name, **options),
    )


def jsonl(*records) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode() + b"\n"


def good(n: int, **extra) -> dict:
    record = {
        "id": f"q{n}",
        "question": f"Question {n}: which drug treats condition {n}?",
        "options": {"A": f"a{n}", "B": f"b{n}", "C": f"c{n}", "D": f"d{n}"},
        "answer": "B",
        "type": "K",
        "specialty": "Cardiology",
    }
    record.update(extra)
    return record


# ------------------------------------------------------------------ the real public files


def test_it_imports_the_whole_medqa_file(project):
    result = run_import(project, MEDQA_FILE.read_bytes(), MEDQA_FILE.name)
    assert result.ok, result.errors[:5]
    assert result.batch.format == "medqa-jsonl"
    assert project.items.count() == 1273
    item = project.items.select_related("current_version").first()
    first = json.loads(MEDQA_FILE.read_text().splitlines()[0])
    assert item.current_version.stem == first["question"]
    assert item.current_version.answer == first["answer_idx"]
    assert item.current_version.answer_text == first["answer"]
    assert item.current_version.option_e == first["options"]["E"]
    assert item.language == "en"
    assert item.status == Status.IMPORTED
    assert item.family_id == item.pk
    assert item.source == "MedQA (USMLE) step1"


@pytest.mark.parametrize("path", CMMLU_FILES, ids=lambda p: p.name)
def test_it_imports_every_cmmlu_file(project, path):
    result = run_import(project, path.read_bytes(), path.name)
    assert result.ok, result.errors[:5]
    assert result.batch.format == "cmmlu-csv"
    subject = path.stem.split("_", 1)[1]
    items = project.items.select_related("current_version")
    assert items.count() == result.batch.created_count > 0
    assert {i.language for i in items} == {"zh"}
    assert {i.specialty for i in items} == {subject.replace("_", " ").capitalize()}
    assert all(len(i.current_version.options) == 4 for i in items)


def test_it_reads_a_cmmlu_row_exactly(project):
    path = SHARED_DATA / "cmmlu_medical" / "dev_anatomy.csv"
    run_import(project, path.read_bytes(), path.name)
    item = Item.objects.select_related("current_version").get(external_id="cmmlu-dev_anatomy-0")
    version = item.current_version
    assert version.stem == "壁胸膜的分部不包括"
    assert version.options == {"A": "肋胸膜", "B": "肺胸膜", "C": "膈胸膜", "D": "胸膜顶"}
    assert version.answer == "B"


def test_it_makes_reimporting_the_same_file_a_no_op(project):
    data = MEDQA_FILE.read_bytes()
    run_import(project, data, MEDQA_FILE.name)
    counts = (Item.objects.count(), ItemVersion.objects.count(), Event.objects.count())
    again = run_import(project, data, MEDQA_FILE.name)
    assert again.ok
    assert again.batch.created_count == 0
    assert again.batch.unchanged_count == 1273
    assert (Item.objects.count(), ItemVersion.objects.count(), Event.objects.count()) == counts


def test_it_adds_only_new_records_from_a_longer_file(project):
    run_import(project, jsonl(good(1), good(2)))
    result = run_import(project, jsonl(good(1), good(2), good(3)))
    assert result.batch.created_count == 1
    assert result.batch.unchanged_count == 2
    assert sorted(project.items.values_list("external_id", flat=True)) == ["q1", "q2", "q3"]


# ------------------------------------------------------------------ all or nothing


def test_it_imports_nothing_and_names_every_bad_line(project):
    three = good(3, options={"A": "x", "B": "y", "C": "z"})
    six = good(4, options={k: k.lower() for k in "ABCDEF"})
    data = jsonl(
        good(1),
        good(2, answer=""),
        three,
        six,
        good(5, question="   "),
        good(6, answer="E"),
        good(1, answer="C"),
    )
    data += b"{not json\n"
    result = run_import(project, data)
    assert not result.ok
    assert Item.objects.count() == 0
    assert result.batch.state == ImportBatch.State.REJECTED
    by_line = {(e.line, e.message.split(" (")[0]) for e in result.errors}
    assert (2, "missing answer key") in by_line
    assert (3, "too few options") in by_line
    assert (4, "too many options") in by_line
    assert (5, "empty stem") in by_line
    assert any(line == 6 and "not among the options" in msg for line, msg in by_line)
    assert any(line == 7 and msg.startswith("duplicate id 'q1'") for line, msg in by_line)
    assert any(line == 8 and msg.startswith("not valid JSON") for line, msg in by_line)
    assert result.batch.error_count == len(result.errors) == 7


def test_it_reports_bad_encoding_by_line(project):
    data = jsonl(good(1)) + '{"id": "q2", "question": "caf\xe9"}\n'.encode("latin-1")
    result = run_import(project, data)
    assert not result.ok
    assert result.errors[0].line == 2
    assert "bad encoding" in result.errors[0].message
    assert Item.objects.count() == 0


def test_it_refuses_an_existing_id_with_different_content(project):
    run_import(project, jsonl(good(1)))
    result = run_import(project, jsonl(good(2), good(1, answer="C")))
    assert not result.ok
    assert "already exists in this project with different content" in result.errors[0].message
    assert list(project.items.values_list("external_id", flat=True)) == ["q1"]


def test_it_rejects_an_empty_file(project):
    result = run_import(project, b"\n\n")
    assert not result.ok
    assert "no records" in result.errors[0].message


def test_it_rejects_a_file_it_cannot_recognise(project):
    result = run_import(project, b"foo,bar\n1,2\n", "x.csv")
    assert not result.ok
    assert "Could not recognise" in result.errors[0].message


# ------------------------------------------------------------------ formats


def test_it_reads_our_csv_schema_with_five_options_and_metadata(project):
    data = (
        b"id,question,A,B,C,D,E,answer,type,specialty,cognitive_level,difficulty,language,source\n"
        b'c1,"A case, with a comma",one,two,three,four,five,E,S,'
        b"Nephrology,problem_solving,hard,en,book\n"
        b"c2,Second,one,two,three,four,,a,K,Nephrology,recall,easy,en,book\n"
    )
    result = run_import(project, data, "ours.csv")
    assert result.ok, result.errors
    assert result.batch.format == "medcot-csv"
    first = Item.objects.select_related("current_version").get(external_id="c1")
    assert first.current_version.stem == "A case, with a comma"
    assert first.current_version.answer == "E"
    assert (first.question_type, first.cognitive_level, first.difficulty) == (
        "S",
        "problem_solving",
        "hard",
    )
    second = Item.objects.select_related("current_version").get(external_id="c2")
    assert second.current_version.answer == "A"
    assert second.current_version.option_e == ""


def test_it_reads_our_jsonl_schema_with_a_cot_and_a_list_of_options(project):
    record = good(1, options=["w", "x", "y", "z", "v"], answer="E", cot="Because v.")
    result = run_import(project, jsonl(record))
    assert result.ok, result.errors
    version = Item.objects.get().current_version
    assert version.options == {"A": "w", "B": "x", "C": "y", "D": "z", "E": "v"}
    assert version.cot == "Because v."


def test_it_reads_medmcqa_layout(project):
    record = {
        "id": "m-1",
        "question": "Drug of choice?",
        "opa": "one",
        "opb": "two",
        "opc": "three",
        "opd": "four",
        "cop": 3,
        "subject_name": "Pharmacology",
    }
    result = run_import(project, jsonl(record))
    assert result.ok, result.errors
    assert result.batch.format == "medmcqa-jsonl"
    item = Item.objects.get()
    assert item.current_version.answer == "C"
    assert item.specialty == "Pharmacology"


def test_it_reads_any_layout_with_a_mapping(project):
    data = b"qid;text;o1;o2;o3;o4;key\n"
    data = b"Q,Stem,W,X,Y,Z,Key\nk1,What?,w,x,y,z,D\n"
    mapping = parse_mapping("id=Q,question=Stem,A=W,B=X,C=Y,D=Z,answer=Key")
    result = run_import(project, data, "other.csv", format="mapped", mapping=mapping)
    assert result.ok, result.errors
    assert Item.objects.get().current_version.answer == "D"


def test_it_refuses_a_mapping_with_unknown_fields():
    with pytest.raises(FormatError, match="Unknown field"):
        parse_mapping("question=a,answer=b,colour=c")


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b'{"question": "q", "options": {"A": "a"}, "answer_idx": "A"}\n', "medqa-jsonl"),
        (
            b'{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}\n',
            "medmcqa-jsonl",
        ),
        (b'{"id": "x", "question": "q", "options": {}, "answer": "A"}\n', "medcot-jsonl"),
        (b",Question,A,B,C,D,Answer\n0,q,a,b,c,d,A\n", "cmmlu-csv"),
        (b"id,question,A,B,C,D,answer\n", "medcot-csv"),
        (b"\xef\xbb\xbfid,question,A,B,C,D,answer\n", "medcot-csv"),
    ],
)
def test_it_detects_the_format(head, fmt):
    assert detect_format(head) == fmt


def test_it_detects_chinese_and_english(project):
    result = run_import(project, jsonl(good(1, question="下列哪项是正确的？"), good(2)))
    assert result.ok
    assert dict(project.items.values_list("external_id", "language")) == {"q1": "zh", "q2": "en"}


# ------------------------------------------------------------------ the database refuses bad state


def _version(item, **fields):
    base = {
        "item": item,
        "number": 2,
        "stem": "s",
        "option_a": "a",
        "option_b": "b",
        "option_c": "c",
        "option_d": "d",
        "answer": "A",
        "author_kind": "human",
    }
    base.update(fields)
    return ItemVersion(**base)


@pytest.mark.parametrize(
    "fields",
    [
        {"option_d": ""},  # three options
        {"answer": "E"},  # key names no option
        {"answer": "F"},
        {"stem": ""},
        {"number": 0},
    ],
)
def test_it_has_the_database_refuse_bad_versions(project, fields):
    from tests.factories import ItemFactory

    item = ItemFactory(project=project)
    with pytest.raises(IntegrityError), transaction.atomic():
        _version(item, **fields).save()


def test_it_has_the_database_refuse_duplicate_external_ids(project):
    from tests.factories import ItemFactory

    ItemFactory(project=project, external_id="same")
    with pytest.raises(IntegrityError), transaction.atomic():
        ItemFactory(project=project, external_id="same")


def test_it_keeps_versions_and_events_append_only(project):
    from medcot.models import AppendOnlyError
    from tests.factories import ItemFactory

    item = ItemFactory(project=project)
    version = item.current_version
    version.stem = "changed"
    with pytest.raises(AppendOnlyError):
        version.save()
    with pytest.raises(AppendOnlyError):
        ItemVersion.objects.filter(pk=version.pk).update(stem="changed")
    with pytest.raises(AppendOnlyError):
        ItemVersion.objects.filter(pk=version.pk).delete()


# ------------------------------------------------------------------ the command


def test_it_imports_through_the_management_command(db, capsys):
    call_command("import_seeds", str(MEDQA_FILE), "--project", "cmd", "--create")
    assert "1273 imported" in capsys.readouterr().out
    call_command("import_seeds", str(MEDQA_FILE), "--project", "cmd")
    assert "0 imported, 1273 already present" in capsys.readouterr().out


def test_it_fails_the_command_and_lists_the_bad_lines(db, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl(good(1), good(2, answer="Z")))
    with pytest.raises(CommandError, match="1 file"):
        call_command("import_seeds", str(bad), "--project", "cmd", "--create")
    err = capsys.readouterr().err
    assert "line 2: answer key 'Z' is not among the options A, B, C, D" in err
    assert Item.objects.count() == 0


def test_it_tells_the_user_when_the_project_does_not_exist(db):
    with pytest.raises(CommandError, match="pass --create"):
        call_command("import_seeds", str(MEDQA_FILE), "--project", "nope")


def test_it_reads_the_shared_data_folder():
    assert Path(MEDQA_FILE).exists() and len(CMMLU_FILES) == 18
