"""The preview before importing (browser and API dry run), licences at import and in releases,
and the case group on the review screens."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from medcot import licenses
from medcot.imports.formats import ImportOptions
from medcot.imports.service import seed_file_import
from medcot.lifecycle import Status
from medcot.models import ImportBatch, Item
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db

CASES = {
    "data": [
        {
            "病例": "患者，女，32岁。停经8周，阴道少量流血1天。",
            "子题": [
                {
                    "题干": "最可能的诊断是？",
                    "选项": ["先兆流产", "异位妊娠", "葡萄胎", "宫颈息肉"],
                    "答案": "A",
                },
                {"题干": "首选的检查是？", "选项": ["B超", "CT", "MRI", "腹腔镜"], "答案": "A"},
            ],
        },
        {
            "病例": "患者，男，70岁。进行性吞咽困难3个月。",
            "子题": [
                {
                    "题干": "最可能的诊断是？",
                    "选项": ["食管癌", "贲门失弛缓", "反流性食管炎", "食管憩室"],
                    "答案": "A",
                }
            ],
        },
    ]
}
# Keys a guess cannot place: the stem under "ask", the key under "sol".
ODD = [
    {
        "num": f"o{n}",
        "ask": f"Which nerve {n} supplies the deltoid?",
        "choices": ["Axillary", "Radial", "Ulnar", "Median"],
        "sol": "A",
    }
    for n in range(7)
]


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_the_preview_shows_the_layout_and_the_records_then_imports_on_confirm(
    client, admin_user, project, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(admin_user)
    data = json.dumps(CASES, ensure_ascii=False, indent=2).encode()
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": upload("病例.json", data), "format": "auto", "license": "cc-by-nc-sa-4.0"},
    )
    batch = ImportBatch.objects.get()
    assert batch.state == ImportBatch.State.PREVIEW and batch.license == "cc-by-nc-sa-4.0"
    page = client.get(response.url).content.decode()
    assert "JSON document · fields recognised by their names" in page
    assert "患者，女，32岁。停经8周" in page  # the shared case, with each question
    assert 'data-testid="group-count">2<' in page
    assert 'data-testid="record-count">3<' in page
    assert "Import 3 questions" in page
    assert Item.objects.count() == 0  # nothing before the confirmation
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            response.url, {"action": "import", "format": "auto", "license": "cc-by-nc-sa-4.0"}
        )
    batch.refresh_from_db()
    assert batch.state == ImportBatch.State.DONE, batch.errors
    assert batch.license == "cc-by-nc-sa-4.0"
    assert Item.objects.exclude(group_id="").count() == 3
    assert "2 case groups" in client.get(response.url).content.decode()


def test_the_mapping_is_fixed_in_the_preview(client, admin_user, project):
    client.force_login(admin_user)
    data = json.dumps({"rows": ODD}).encode()
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": upload("odd.json", data), "format": "auto"},
    )
    url = response.url
    page = client.get(url).content.decode()
    assert "Import 0 questions" in page or "disabled" in page  # the guess finds no stem
    response = client.post(
        url,
        {
            "action": "update",
            "format": "auto",
            "license": "mit",
            "map_question": "ask",
            "map_options": "choices",
            "map_answer": "sol",
            "map_id": "num",
        },
    )
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert 'data-testid="record-count">7<' in page
    assert "Which nerve 0 supplies the deltoid?" in page
    assert "Import 7 questions" in page and "disabled" not in page.split("Import 7")[0][-200:]
    batch = ImportBatch.objects.get()
    assert batch.options["mapping"]["question"] == "ask"
    # Discard: nothing stays behind.
    client.post(url, {"action": "discard"})
    assert not ImportBatch.objects.exists()


def test_the_api_dry_run_previews_without_writing(admin_user, project):
    api = token_client(admin_user)
    data = json.dumps(CASES, ensure_ascii=False).encode()
    response = api.post(
        f"/api/projects/{project.slug}/imports/?dry_run=1",
        {"file": upload("cases.json", data)},
        format="multipart",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ok"] is True
    assert body["container"] == "json" and body["records_path"] == "data"
    assert body["record_count"] == 3 and body["group_count"] == 2
    assert body["mapping"]["case_text"] == "病例"
    assert body["mapping"]["question"] == "子题[].题干"
    assert len(body["records"]) == 3
    assert body["records"][0]["case_text"].startswith("患者，女，32岁")
    assert not ImportBatch.objects.exists() and not Item.objects.exists()

    # The same with a mapping by column number on a headerless CSV, and an error summary.
    csv = b"What?,a,b,c,d,2\nWhy?,a,b,c,d,7\n"
    response = api.post(
        f"/api/projects/{project.slug}/imports/?dry_run=1",
        {
            "file": upload("p.csv", csv),
            "mapping": "question=1,A=2,B=3,C=4,D=5,answer=6",
            "first_row_is_data": "true",
            "index_base": "1",
        },
        format="multipart",
    )
    body = response.json()
    assert body["ok"] is False and body["error_count"] == 1
    assert body["errors"][0]["line"] == 2 and "out of range" in body["errors"][0]["message"]
    assert body["records"][0]["answer"] == "B"


def test_the_api_records_the_licence_and_the_source(admin_user, project):
    api = token_client(admin_user)
    record = {
        "question": "Q?",
        "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
        "answer_idx": "C",
    }
    response = api.post(
        f"/api/projects/{project.slug}/imports/?wait=1",
        {
            "file": upload("m.jsonl", json.dumps(record).encode()),
            "license": "mit",
            "source": "Ours",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["license"] == "mit"
    assert Item.objects.get().source == "Ours"


# ------------------------------------------------------------------ licences


def test_the_most_restrictive_licence_keeps_every_restriction():
    assert licenses.most_restrictive(["mit"]) == "mit"
    assert licenses.most_restrictive(["mit", "cc-by-nc-sa-4.0"]) == "cc-by-nc-sa-4.0"
    assert licenses.most_restrictive(["cc-by-sa-4.0", "cc-by-nc-4.0"]) == "cc-by-nc-sa-4.0"
    assert licenses.most_restrictive(["mit", "apache-2.0"]) == "cc-by-4.0"
    assert licenses.most_restrictive(["mit", "proprietary"]) == "proprietary"
    assert licenses.less_restrictive("cc-by-nc-4.0", "cc-by-nc-sa-4.0")
    assert not licenses.less_restrictive("cc-by-nc-sa-4.0", "mit")


def _import(project, name, data, license):
    result = seed_file_import(
        project=project,
        data=data,
        file_name=name,
        options=ImportOptions(file_name=name, license=license),
    )
    assert result.ok, result.errors


def test_the_release_page_defaults_to_the_most_restrictive_source_and_warns(
    client, admin_user, project
):
    medqa = {
        "question": "Q?",
        "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
        "answer_idx": "C",
    }
    _import(project, "medqa.jsonl", json.dumps(medqa).encode(), "mit")
    _import(
        project,
        "test_anatomy.csv",
        ",Question,A,B,C,D,Answer\n0,问？,甲,乙,丙,丁,A\n".encode(),
        "cc-by-nc-sa-4.0",
    )
    Item.objects.update(status=Status.APPROVED)
    client.force_login(admin_user)
    url = reverse("release_list", args=[project.slug])
    page = client.get(url).content.decode()
    assert '<option value="cc-by-nc-sa-4.0" selected>' in page
    assert "test_anatomy.csv" in page and "medqa.jsonl" in page
    response = client.post(url, {"version": "v1", "license": "cc-by-nc-4.0"})
    assert response.status_code == 400
    assert "less restrictive than the licence of some sources" in response.content.decode()
    response = client.post(
        url, {"version": "v1", "license": "cc-by-nc-4.0", "accept_license": "on"}
    )
    # Confirmed, the licence no longer stops it (these items lack the consensus to release).
    page = response.content.decode()
    assert "less restrictive than the licence" not in page
    assert "nothing to release" in page


def test_createdemo_records_medqa_as_mit_and_cmmlu_as_by_nc_sa(db):
    from django.core.management import call_command

    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.exists():
        pytest.skip("shared/data is not beside the repo")
    call_command("createdemo", verbosity=0)
    licences = dict(ImportBatch.objects.values_list("file_name", "license"))
    assert licences["medqa_test.jsonl"] == "mit"
    assert {v for k, v in licences.items() if k.endswith(".csv")} == {"cc-by-nc-sa-4.0"}


# ------------------------------------------------------------------ reviewers see the case


def test_reviewers_see_the_shared_case_with_each_sub_question(client, reviewer, project):
    data = json.dumps(CASES, ensure_ascii=False).encode()
    _import(project, "cases.json", data, "proprietary")
    Item.objects.update(status=Status.FIRST_REVIEW)
    client.force_login(reviewer)
    page = client.get(reverse("review:first_pass")).content.decode()
    assert 'data-testid="case-group"' in page
    item = Item.objects.get(pk=int(page.split('id="item-')[1].split("-title")[0]))
    assert item.case_text in page
    assert f"question {item.group_order} of this case" in page
