"""Runs and releases through the API: the generation and releases apps' own services do the
work; these tests check the API calls them and reports what they did."""

import hashlib

import pytest

from generation.models import Job, Run
from medcot.lifecycle import Status
from review.releases.models import Release
from review.releases.services import release_build
from tests.factories import ItemFactory
from tests.releases.conftest import reviewed_item

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_it_starts_a_run_and_reports_its_progress(
    admin_api, project, django_capture_on_commit_callbacks
):
    ItemFactory.create_batch(3, project=project, status=Status.IMPORTED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.post(
            f"/api/projects/{project.slug}/runs/", {"stage": "cot", "limit": 2}, format="json"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "running"
    assert body["totals"]["total"] == 2 and body["totals"]["queued"] == 2
    assert [s["kind"] for s in body["stages"]] == ["cot"]
    assert callbacks, "jobs are dispatched after commit"
    run = Run.objects.get(pk=body["id"])
    assert Job.objects.filter(run=run).count() == 2
    listing = admin_api.get(f"/api/projects/{project.slug}/runs/").json()
    assert [r["id"] for r in listing["results"]] == [run.pk]


def test_it_pauses_resumes_and_cancels_a_run(admin_api, project):
    ItemFactory.create_batch(2, project=project, status=Status.IMPORTED)
    run_id = admin_api.post(
        f"/api/projects/{project.slug}/runs/", {"stage": "cot"}, format="json"
    ).json()["id"]
    base = f"/api/projects/{project.slug}/runs/{run_id}"
    assert admin_api.post(f"{base}/pause/").json()["state"] == "paused"
    assert admin_api.post(f"{base}/resume/").json()["state"] == "running"
    cancelled = admin_api.post(f"{base}/cancel/").json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["totals"]["cancelled"] == 2
    # A finished run stays finished: resuming it changes nothing.
    assert admin_api.post(f"{base}/resume/").json()["state"] == "cancelled"


def test_it_explains_a_bad_run_request(admin_api, project):
    response = admin_api.post(
        f"/api/projects/{project.slug}/runs/", {"stage": "dream", "limit": 0}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"stage", "limit"}
    response = admin_api.post(
        f"/api/projects/{project.slug}/runs/", {"stage": "cot", "profile_id": 999}, format="json"
    )
    assert response.status_code == 400
    assert "profile_id" in response.json()["error"]["details"]


def test_it_keeps_runs_and_releases_from_non_admins(reviewer_api, project):
    for url in (f"/api/projects/{project.slug}/runs/", f"/api/projects/{project.slug}/releases/"):
        assert reviewer_api.get(url).status_code == 403
        assert reviewer_api.post(url, {}, format="json").status_code == 403
    assert not Run.objects.exists()


def test_it_builds_and_downloads_a_release(
    admin_api, project, reviewer, expert_a, expert_b, django_capture_on_commit_callbacks
):
    reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.post(
            f"/api/projects/{project.slug}/releases/", {"version": "v1.0"}, format="json"
        )
    assert response.status_code == 201, response.json()
    assert response.json()["state"] == "queued"
    assert response.json()["download"] is None
    assert len(callbacks) == 1
    release_build(release_id=Release.objects.get(version="v1.0").pk)  # what the worker does
    detail = admin_api.get(f"/api/projects/{project.slug}/releases/v1.0/").json()
    assert detail["state"] == "built" and detail["item_count"] == 1
    download = admin_api.get(detail["download"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    data = b"".join(download.streaming_content)
    assert hashlib.sha256(data).hexdigest() == detail["zip_sha256"]
    assert download["X-Checksum-SHA256"] == detail["zip_sha256"]


def test_it_refuses_a_second_release_with_the_same_version(
    admin_api, project, reviewer, expert_a, expert_b
):
    reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])
    url = f"/api/projects/{project.slug}/releases/"
    assert admin_api.post(url, {"version": "v1"}, format="json").status_code == 201
    again = admin_api.post(url, {"version": "v1"}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


def test_it_says_why_there_is_nothing_to_release(admin_api, project):
    response = admin_api.post(
        f"/api/projects/{project.slug}/releases/", {"version": "v1"}, format="json"
    )
    assert response.status_code == 400
    assert "nothing to release" in str(response.json()["error"]["details"])
    missing = admin_api.get(f"/api/projects/{project.slug}/releases/v9/download/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
