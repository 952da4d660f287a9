"""Import problems are stored as a code and its parameters and read in the reader's language:
on the result and preview pages, in the API (Accept-Language), capped as before; rows stored
before codes existed still read as they were stored."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from medcot.imports.formats import ERROR_LIMIT, ImportOptions
from medcot.imports.messages import MESSAGES, Msg, localize
from medcot.imports.service import seed_file_import
from medcot.models import ImportBatch, Item
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}


def _record(n: int, **changes) -> dict:
    record = {
        "id": f"q{n}",
        "question": f"问题 {n}：首选的检查是？",
        "options": {"A": "B超", "B": "CT", "C": "MRI", "D": "腹腔镜"},
        "answer": "A",
    }
    record.update(changes)
    return record


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


# A file with one of each common problem, and one line repeated (a warning).
BAD = _jsonl(
    [
        _record(1, options={"A": "B超", "B": "CT", "C": "", "D": "腹腔镜"}),
        _record(2, answer="F"),
        _record(3),
        _record(3),
        _record(4, type="X"),
    ]
)


def _import(project, data: bytes, name: str = "bad.jsonl") -> ImportBatch:
    result = seed_file_import(
        project=project, data=data, file_name=name, options=ImportOptions(file_name=name)
    )
    return result.batch


def test_problems_are_stored_as_code_params_and_the_english_sentence(project):
    batch = _import(project, BAD)
    assert batch.state == ImportBatch.State.REJECTED
    by_line = {e["line"]: e for e in batch.errors}
    assert by_line[1] == {
        "line": 1,
        "message": "option C is empty",
        "code": "empty_option",
        "params": {"label": "C"},
    }
    assert by_line[2]["code"] == "answer_not_option"
    assert by_line[2]["params"] == {"answer": "F", "labels": "A, B, C, D"}
    assert by_line[2]["message"] == "answer key 'F' is not among the options A, B, C, D"
    assert by_line[5]["code"] == "bad_question_type"
    # A unit inside a sentence is a code too, so the whole sentence translates.
    (warning,) = batch.warnings
    assert warning["code"] == "repeated"
    assert warning["params"]["unit"] == {"code": "unit_line", "params": {}}
    assert warning["message"] == "line 4 repeats line 3; kept once"
    assert not Item.objects.exists()


def test_every_code_reads_in_chinese_and_keeps_its_placeholders():
    with translation.override("zh-hans"):
        for code, english in MESSAGES.items():
            chinese = translation.gettext(english)
            assert chinese != english or code in {"cmmlu_header"}, code
    sample = Msg("in_question", order=2, problem=Msg("too_few_options", n=3))
    assert sample == "question 2: too few options (3; need 4 or 5)"
    with translation.override("zh-hans"):
        assert localize(sample) == "第 2 小题：选项太少（3 个；需要 4 或 5 个）"
        stored = {"line": 7, "message": str(sample), **sample.as_json()}
        assert (
            localize(json.loads(json.dumps(stored)))
            == "第 2 小题：选项太少（3 个；需要 4 或 5 个）"
        )


def test_the_result_page_reads_the_problems_in_the_readers_language(client, admin_user, project):
    batch = _import(project, BAD)
    client.force_login(admin_user)
    url = reverse("import_batch_detail", args=[project.slug, batch.pk])
    chinese = client.get(url, **CHINESE).content.decode()
    assert "选项 C 为空" in chinese
    assert "答案 &#x27;F&#x27; 不在选项 A, B, C, D 之中" in chinese
    assert "题型 &#x27;X&#x27; 有误，须为 K 或 S" in chinese
    assert "第 4 行与第 3 行重复，只保留一次" in chinese
    assert "option C is empty" not in chinese and "repeats" not in chinese
    english = client.get(url, **ENGLISH).content.decode()
    assert "option C is empty" in english and "line 4 repeats line 3; kept once" in english
    assert "选项 C 为空" not in english


def test_rows_stored_before_codes_read_as_stored(client, admin_user, project):
    batch = _import(project, BAD)
    batch.errors = [{"line": 3, "message": "an old sentence, stored in English"}]
    batch.warnings = [{"line": 4, "message": "an old warning", "code": "no_such_code_any_more"}]
    batch.save(update_fields=["errors", "warnings"])
    client.force_login(admin_user)
    page = client.get(
        reverse("import_batch_detail", args=[project.slug, batch.pk]), **CHINESE
    ).content.decode()
    assert "an old sentence, stored in English" in page and "an old warning" in page
    body = (
        token_client(admin_user)
        .get(f"/api/projects/{project.slug}/imports/{batch.pk}/", **CHINESE)
        .json()
    )
    assert body["errors"] == [{"line": 3, "message": "an old sentence, stored in English"}]


def test_the_api_answers_in_the_requests_language_and_keeps_the_code(admin_user, project):
    batch = _import(project, BAD)
    api = token_client(admin_user)
    url = f"/api/projects/{project.slug}/imports/{batch.pk}/"
    chinese = api.get(url, **CHINESE).json()
    first = chinese["errors"][0]
    assert first == {
        "line": 1,
        "message": "选项 C 为空",
        "code": "empty_option",
        "params": {"label": "C"},
    }
    assert chinese["warnings"][0]["message"] == "第 4 行与第 3 行重复，只保留一次"
    english = api.get(url, **ENGLISH).json()
    assert english["errors"][0]["message"] == "option C is empty"
    assert english["errors"][0]["code"] == "empty_option"


def test_the_cap_holds_and_the_pages_say_how_many_there_were(client, admin_user, project):
    many = _jsonl([_record(n, answer="F") for n in range(ERROR_LIMIT + 50)])
    batch = _import(project, many, "many.jsonl")
    assert batch.error_count == ERROR_LIMIT + 50
    assert len(batch.errors) == ERROR_LIMIT
    client.force_login(admin_user)
    page = client.get(
        reverse("import_batch_detail", args=[project.slug, batch.pk]), **CHINESE
    ).content.decode()
    assert page.count("不在选项 A, B, C, D 之中") == ERROR_LIMIT
    body = (
        token_client(admin_user)
        .get(f"/api/projects/{project.slug}/imports/{batch.pk}/", **CHINESE)
        .json()
    )
    assert len(body["errors"]) == ERROR_LIMIT and body["error_count"] == ERROR_LIMIT + 50


def _upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_the_preview_page_reads_line_and_file_problems_in_chinese(client, admin_user, project):
    client.force_login(admin_user)
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": _upload("bad.jsonl", BAD), "format": "auto", "license": "mit"},
        **CHINESE,
    )
    page = client.get(response.url, **CHINESE).content.decode()
    assert "选项 C 为空" in page and "第 4 行与第 3 行重复，只保留一次" in page
    assert "option C is empty" not in page
    # A file that cannot be read at all: the one sentence about the file, in Chinese.
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": _upload("u16.jsonl", "\ufeff{}".encode("utf-16")), "format": "auto"},
        **CHINESE,
    )
    page = client.get(response.url, **CHINESE).content.decode()
    assert "该文件是 UTF-16 编码的文本；请另存为 UTF-8 后重新上传。" in page
    assert "UTF-16 text" not in page


def test_the_api_dry_run_reads_in_the_requests_language(admin_user, project):
    api = token_client(admin_user)
    url = f"/api/projects/{project.slug}/imports/?dry_run=1"
    body = api.post(url, {"file": _upload("bad.jsonl", BAD)}, format="multipart", **CHINESE).json()
    assert body["ok"] is False and body["error_count"] == 3
    assert body["errors"][0]["message"] == "选项 C 为空"
    assert body["errors"][0]["code"] == "empty_option"
    body = api.post(
        url,
        {"file": _upload("u16.jsonl", "\ufeff{}".encode("utf-16"))},
        format="multipart",
        **CHINESE,
    ).json()
    assert body["message"] == "该文件是 UTF-16 编码的文本；请另存为 UTF-8 后重新上传。"
    assert body["errors"][0]["code"] == "utf16"
    body = api.post(
        url,
        {"file": _upload("u16.jsonl", "\ufeff{}".encode("utf-16"))},
        format="multipart",
        **ENGLISH,
    ).json()
    assert body["message"] == "The file is UTF-16 text; save it as UTF-8 and upload it again."


def test_a_bad_mapping_is_refused_in_the_readers_language(admin_user, project):
    api = token_client(admin_user)
    response = api.post(
        f"/api/projects/{project.slug}/imports/?dry_run=1",
        {"file": _upload("bad.jsonl", BAD), "mapping": "question"},
        format="multipart",
        **CHINESE,
    )
    assert response.status_code == 400
    assert "映射条目的写法是 字段=列名，而不是 'question'" in json.dumps(
        response.json(), ensure_ascii=False
    )
