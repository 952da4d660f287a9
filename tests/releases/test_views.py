"""The release pages, downloads and the dashboard: roles, htmx fragments, bad input."""

import io
import zipfile

import pytest
from django.urls import reverse

from medcot.lifecycle import Status
from review.releases.models import Release
from review.releases.services import release_build, release_create

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def built(project, admin_user, make_item, expert_a, expert_b):
    make_item(panel_scores={expert_a: [2, 2, 1, 2, 2], expert_b: [2, 1, 1, 2, 1]})
    make_item(specialty="Neurology")
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    return release_build(release_id=release.pk)


def _url(view, release, **extra):
    return reverse(view, kwargs={"slug": release.project.slug, "version": release.version, **extra})


def test_it_shows_the_dashboard_to_admins_with_every_section(
    client, admin_user, project, make_item, expert_a, expert_b
):
    make_item(panel_scores={expert_a: [2, 2, 1, 2, 2], expert_b: [2, 1, 1, 2, 1]})
    make_item(status=Status.DISCARDED)
    client.force_login(admin_user)
    response = client.get(reverse("project_dashboard", args=[project.slug]))
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Funnel",
        "Five-strike escalations",
        "Items by specialty",
        "Mean rubric score per dimension",
        "Agreement between experts",
        "ICC(2,1)",
        "Model calls by run",
        "<svg",
        'hx-trigger="every 10s"',
    ):
        assert text in html, text
    assert expert_a.medcot_profile.pseudonym in html
    assert "<script" not in html.split("</head>")[1]
    assert " style=" not in html


def test_it_answers_a_dashboard_poll_with_the_fragment_only(client, admin_user, project):
    client.force_login(admin_user)
    response = client.get(reverse("project_dashboard", args=[project.slug]), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard-live"')
    assert "<html" not in html
    assert "No items yet." in html


@pytest.mark.parametrize("name", ["project_dashboard", "release_list"])
def test_it_keeps_reports_from_everyone_but_admins(client, reviewer, expert_a, project, name):
    url = reverse(name, args=[project.slug])
    assert client.get(url).status_code == 302
    for user in (reviewer, expert_a):
        client.force_login(user)
        assert client.get(url).status_code == 403


def test_it_404s_for_an_unknown_project(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("project_dashboard", args=["nope"])).status_code == 404
    assert client.post(reverse("project_dashboard", args=["nope"])).status_code == 405


def test_it_queues_a_release_from_the_form_and_dispatches_after_commit(
    client, admin_user, project, make_item, django_capture_on_commit_callbacks
):
    make_item(specialty="Cardiology")
    make_item(specialty="Neurology")
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("release_list", args=[project.slug]),
            {"version": "v1.0", "license": "cc-by-4.0", "specialties": ["Neurology"]},
        )
    release = Release.objects.get(project=project, version="v1.0")
    assert response.status_code == 302
    assert response["Location"] == _url("release_detail", release)
    assert len(callbacks) == 1
    assert release.state == Release.State.QUEUED
    assert release.filters == {"specialties": ["Neurology"]}
    assert release.license == "cc-by-4.0"
    assert release.created_by == admin_user


def test_it_shows_form_errors_for_bad_input(client, admin_user, project, make_item):
    make_item()
    client.force_login(admin_user)
    url = reverse("release_list", args=[project.slug])
    response = client.post(url, {"version": "../x", "license": "cc-by-4.0"})
    assert response.status_code == 400
    assert "Use letters, digits" in response.content.decode()
    response = client.post(url, {"version": "v1", "license": "cc-by-4.0", "languages": ["fr"]})
    assert response.status_code == 400
    client.post(url, {"version": "v1", "license": "cc-by-4.0"})
    response = client.post(url, {"version": "v1", "license": "cc-by-4.0"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Release.objects.filter(project=project).count() == 1


def test_it_polls_a_building_release_and_stops_when_built(client, admin_user, project, make_item):
    make_item()
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    client.force_login(admin_user)
    fragment = client.get(_url("release_detail", release), **HTMX).content.decode()
    assert 'hx-trigger="every 1s"' in fragment
    assert "<progress" in fragment
    release_build(release_id=release.pk)
    fragment = client.get(_url("release_detail", release), **HTMX).content.decode()
    assert "hx-trigger" not in fragment
    assert _url("release_download", release) in fragment


def test_it_shows_the_built_release_with_its_files_and_card(client, admin_user, built):
    client.force_login(admin_user)
    html = client.get(_url("release_detail", built)).content.decode()
    assert built.files["data.parquet"]["sha256"] in html
    assert "Dataset card" in html
    assert _url("release_file", built, name="charts/funnel.svg") in html
    assert "<h2>How the items were validated</h2>" in html


def test_it_streams_the_zip_to_admins_only(client, admin_user, reviewer, built):
    url = _url("release_download", built)
    client.force_login(reviewer)
    assert client.get(url).status_code == 403
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith("attachment;")
    assert built.zip_name in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert f"{built.project.slug}-v1/data.parquet" in archive.namelist()
    assert client.post(url).status_code == 405


def test_it_serves_single_files_and_refuses_other_paths(client, admin_user, built):
    client.force_login(admin_user)
    svg = client.get(_url("release_file", built, name="charts/funnel.svg"))
    assert svg.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml"
    assert svg["Content-Security-Policy"] == "default-src 'none'"
    csv = client.get(_url("release_file", built, name="data.csv"))
    assert csv["Content-Disposition"].startswith("attachment;")
    for name in ("../../../etc/passwd", "nothing.txt", "charts/../data.csv"):
        assert client.get(_url("release_file", built, name=name)).status_code == 404


def test_it_shows_the_diff_between_two_versions(client, admin_user, project, built, make_item):
    added = make_item(external_id="new-one")
    second = release_build(
        release_id=release_create(
            project=project, version="v2", actor=admin_user, dispatch=False
        ).pk
    )
    client.force_login(admin_user)
    html = client.get(_url("release_diff", second)).content.decode()
    assert "Changes from v1 to v2" in html
    assert "new-one" in html
    assert reverse("item_detail", args=[project.slug, added.pk]) in html
    first_page = client.get(_url("release_diff", built)).content.decode()
    assert "first release" in first_page
    assert client.get(_url("release_diff", second) + "?base=nope").status_code == 404


def test_it_retries_only_failed_builds_and_only_by_post(client, admin_user, built):
    client.force_login(admin_user)
    url = _url("release_retry", built)
    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)
    assert "Only a failed build can be retried." in response.content.decode()
    Release.objects.filter(pk=built.pk).update(state=Release.State.FAILED, zip_sha256="")
    client.post(url)
    assert Release.objects.get(pk=built.pk).state == Release.State.QUEUED
