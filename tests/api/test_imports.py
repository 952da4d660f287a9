import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from medcot.models import ImportBatch, Item

pytestmark = pytest.mark.django_db


def _record(n: int, **extra) -> dict:
    return {
        "id": f"q{n}",
        "question": f"Question {n}: which drug first for stable angina?",
        "options": {"A": "Aspirin", "B": "Warfarin", "C": "Insulin", "D": "Heparin"},
        "answer": "A",
        "specialty": "Cardiology",
        "language": "en",
        **extra,
    }


def _jsonl(records) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def _upload(data: bytes, name: str = "seeds.jsonl") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_it_imports_a_file_synchronously_with_wait(admin_api, project):
    response = admin_api.post(
        f"/api/projects/{project.slug}/imports/?wait=1",
        {"file": _upload(_jsonl([_record(1), _record(2)]))},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "done"
    assert body["created_count"] == 2
    assert body["errors"] == []
    assert Item.objects.filter(project=project).count() == 2
    assert response["Location"] == f"/api/projects/{project.slug}/imports/{body['id']}/"


def test_it_reports_every_bad_line_and_imports_nothing(admin_api, project):
    bad = [_record(1), _record(2, answer="Z"), _record(3, options={"A": "only one"})]
    response = admin_api.post(
        f"/api/projects/{project.slug}/imports/?wait=1",
        {"file": _upload(_jsonl(bad))},
        format="multipart",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "rejected"
    assert [e["line"] for e in body["errors"]] == [2, 3]
    assert Item.objects.filter(project=project).count() == 0


def test_it_queues_an_upload_for_the_worker_and_shows_its_state(
    admin_api, project, django_capture_on_commit_callbacks
):
    from medcot.imports.service import import_batch_process

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.post(
            f"/api/projects/{project.slug}/imports/",
            {"file": _upload(_jsonl([_record(1)])), "specialty": "Cardiology"},
            format="multipart",
        )
    assert response.status_code == 201
    batch_id = response.json()["id"]
    assert response.json()["state"] == "pending"
    assert len(callbacks) == 1
    # What the worker does with the dispatched task:
    import_batch_process(batch_id=batch_id)
    detail = admin_api.get(f"/api/projects/{project.slug}/imports/{batch_id}/").json()
    assert detail["state"] == "done"
    assert detail["created_count"] == 1
    listing = admin_api.get(f"/api/projects/{project.slug}/imports/").json()
    assert [b["id"] for b in listing["results"]] == [batch_id]
    assert "errors" not in listing["results"][0]


def test_it_treats_a_second_import_of_the_same_file_as_unchanged(admin_api, project):
    data = _jsonl([_record(1)])
    for _ in range(2):
        response = admin_api.post(
            f"/api/projects/{project.slug}/imports/?wait=1",
            {"file": _upload(data)},
            format="multipart",
        )
    assert response.json()["unchanged_count"] == 1
    assert response.json()["created_count"] == 0
    assert Item.objects.filter(project=project).count() == 1


def test_it_refuses_imports_to_a_reviewer(reviewer_api, project):
    response = reviewer_api.post(
        f"/api/projects/{project.slug}/imports/?wait=1",
        {"file": _upload(_jsonl([_record(1)]))},
        format="multipart",
    )
    assert response.status_code == 403
    assert not ImportBatch.objects.exists()


def test_it_requires_a_file(admin_api, project):
    response = admin_api.post(
        f"/api/projects/{project.slug}/imports/", {"format": "auto"}, format="multipart"
    )
    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_it_explains_a_bad_mapping(admin_api, project):
    response = admin_api.post(
        f"/api/projects/{project.slug}/imports/",
        {"file": _upload(b"x"), "mapping": "nonsense"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "mapping" in response.json()["error"]["details"]


@override_settings(MEDCOT_MAX_UPLOAD_MB=1)
def test_it_refuses_an_upload_over_the_size_limit_with_413(admin_api, project):
    big = _jsonl([_record(n) for n in range(6000)])
    assert len(big) > 1024 * 1024
    response = admin_api.post(
        f"/api/projects/{project.slug}/imports/", {"file": _upload(big)}, format="multipart"
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "limit is 1 MB" in error["message"]
    assert not ImportBatch.objects.exists()
