import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from medcot.models import ImportBatch, Item, Project
from tests.factories import ItemFactory


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


RECORD = {
    "id": "v1",
    "question": "Which vitamin deficiency causes scurvy?",
    "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"},
    "answer": "B",
}


def test_it_sends_anonymous_visitors_to_the_login_page(client, project):
    response = client.get(reverse("project_detail", args=[project.slug]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_logs_a_demo_user_in_and_out(client, reviewer):
    response = client.post(
        reverse("login"), {"username": "reviewer", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert client.get(reverse("project_list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("project_list")).status_code == 302


def test_it_refuses_people_without_a_role(client, outsider, project):
    client.force_login(outsider)
    assert client.get(reverse("project_list")).status_code == 403


def test_it_lists_projects_with_their_counts(client, reviewer, project):
    ItemFactory.create_batch(3, project=project)
    client.force_login(reviewer)
    response = client.get(reverse("project_list"))
    assert project.name in response.content.decode()
    assert response.context["projects"][0].item_count == 3


def test_it_shows_and_filters_a_projects_items(client, reviewer, project):
    ItemFactory(project=project, external_id="cardio-1", specialty="Cardiology")
    ItemFactory(project=project, external_id="neuro-1", specialty="Neurology")
    client.force_login(reviewer)
    response = client.get(
        reverse("project_detail", args=[project.slug]), {"specialty": "Neurology"}
    )
    body = response.content.decode()
    assert "neuro-1" in body
    assert "cardio-1" not in body


def test_it_answers_an_htmx_filter_with_the_table_alone(client, reviewer, project):
    ItemFactory(project=project, external_id="only-one")
    client.force_login(reviewer)
    response = client.get(
        reverse("project_detail", args=[project.slug]),
        {"q": "only"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="item-table",
    )
    body = response.content.decode()
    assert "only-one" in body
    assert "<html" not in body


def test_it_escapes_question_text(client, admin_user, project):
    item = ItemFactory(project=project, version__stem="<script>alert(1)</script> chest pain")
    client.force_login(admin_user)
    for url in (
        reverse("project_detail", args=[project.slug]),
        reverse("item_detail", args=[project.slug, item.pk]),
    ):
        body = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_it_shows_the_import_page_to_admins_only(client, reviewer, admin_user, project):
    url = reverse("project_import", args=[project.slug])
    client.force_login(reviewer)
    assert client.get(url).status_code == 403
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_it_imports_an_uploaded_file_through_the_worker_task(
    client, admin_user, project, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(admin_user)
    data = (json.dumps(RECORD) + "\n").encode()
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": upload("seeds.jsonl", data), "format": "auto"},
    )
    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("import_batch_preview", args=[project.slug, batch.pk])
    assert batch.state == "preview"
    preview = client.get(response.url).content.decode()
    assert "Import 1 question" in preview
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(response.url, {"action": "import", "format": "auto"})
    assert response.url == reverse("import_batch_detail", args=[project.slug, batch.pk])
    batch.refresh_from_db()
    assert batch.state == "done"
    assert batch.created_by == admin_user
    assert batch.content is None
    assert Item.objects.get().external_id == "v1"
    page = client.get(response.url).content.decode()
    assert "1 questions imported" in page


def test_it_reports_every_bad_line_of_an_upload(
    client, admin_user, project, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(admin_user)
    bad = dict(RECORD, id="v2", answer="F")
    data = (json.dumps(RECORD) + "\n" + json.dumps(bad) + "\n").encode()
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": upload("<b>bad</b>.jsonl", data), "format": "auto"},
    )
    # The preview already names the bad line, and offers no import.
    page = client.get(response.url).content.decode()
    assert "answer key &#x27;F&#x27; is not among the options" in page
    assert "disabled" in page
    assert "<b>bad</b>" not in page
    assert Item.objects.count() == 0


def test_it_polls_a_running_import_with_a_partial(client, admin_user, project):
    batch = ImportBatch.objects.create(
        project=project, file_name="x.jsonl", sha256="0", format="auto"
    )
    client.force_login(admin_user)
    response = client.get(
        reverse("import_batch_detail", args=[project.slug, batch.pk]), HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert "<html" not in body


def test_it_refuses_an_oversized_upload(client, admin_user, project, settings):
    settings.MEDCOT_MAX_UPLOAD_MB = 0
    client.force_login(admin_user)
    response = client.post(
        reverse("project_import", args=[project.slug]),
        {"file": upload("big.jsonl", b"x" * 2048), "format": "auto"},
    )
    assert response.status_code == 200
    assert "the limit is 0 MB" in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_it_refuses_get_only_methods_on_the_import_page(client, admin_user, project):
    client.force_login(admin_user)
    response = client.put(reverse("project_import", args=[project.slug]))
    assert response.status_code == 405


def test_it_creates_a_project_from_the_form(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("project_new"),
        {
            "name": "Cardiology 2027",
            "slug": "cardio-2027",
            "language": "zh",
            "expansion_factor": 10,
            "reanswer_attempts": 5,
            "panel_size": 2,
            "consensus_minimum": 2,
            "first_pass_counts_for_consensus": "on",
        },
    )
    assert response.status_code == 302
    project = Project.objects.get(slug="cardio-2027")
    assert project.created_by == admin_user
    assert project.events.get().kind == "project_created"


@pytest.mark.parametrize("role_fixture", ["reviewer", "expert_a"])
def test_it_keeps_project_creation_for_admins(client, request, role_fixture):
    client.force_login(request.getfixturevalue(role_fixture))
    assert client.get(reverse("project_new")).status_code == 403
