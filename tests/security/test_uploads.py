import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from medcot.models import ImportBatch

pytestmark = pytest.mark.django_db


@override_settings(MEDCOT_MAX_UPLOAD_MB=1)
def test_it_refuses_an_oversized_upload_in_the_browser_with_a_clear_error(
    client, admin_user, project
):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("big.jsonl", b"x" * (2 * 1024 * 1024 + 10))
    response = client.post(f"/projects/{project.slug}/import/", {"file": upload, "format": "auto"})
    assert response.status_code == 200
    assert "The file is 2 MB; the limit is 1 MB." in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_it_parses_a_binary_upload_as_a_failed_file_not_a_crash(admin_user, project):
    from tests.api.conftest import token_client

    upload = SimpleUploadedFile("blob.jsonl", bytes(range(256)) * 64)
    response = token_client(admin_user).post(
        f"/api/projects/{project.slug}/imports/?wait=1", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "failed"
    assert body["errors"] and "binary file" in body["errors"][0]["message"]
