"""Model and user text is escaped on every page that shows it.

The payloads go where people and models write: stems, options, CoTs, reasons (comments), ids,
specialties, file names and import error messages. A page passes when no payload appears raw.
"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from medcot.imports.formats import ImportOptions
from medcot.imports.service import seed_file_import
from medcot.lifecycle import transition
from medcot.services import item_version_create
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "<script>alert('stem')</script>",
    '"><img src=x onerror=alert(1)>',
    "<svg/onload=alert('cot')>",
    "</textarea><script>alert(2)</script>",
    "<a href=\"javascript:alert('x')\">click</a>",
]


def _raw_markers():
    return ["<script>alert", "<img src=x", "<svg/onload", '<a href="javascript:']


def _assert_escaped(html: str, where: str) -> None:
    for marker in _raw_markers():
        assert marker not in html, f"unescaped payload {marker!r} on {where}"


@pytest.fixture
def hostile_item(project, admin_user):
    item = ItemFactory(
        project=project,
        status="imported",
        external_id="q<script>alert('id')</script>",
        specialty="<svg/onload=alert('specialty')>",
        version__stem=PAYLOADS[0] + " What next?",
        version__option_a=PAYLOADS[1],
        version__option_b=PAYLOADS[2],
        version__option_c=PAYLOADS[3],
        version__option_d=PAYLOADS[4],
        version__cot=PAYLOADS[2],
    )
    item_version_create(
        item=item,
        author_kind="human",
        author=admin_user,
        reason="fixed " + PAYLOADS[0],
        cot="Because " + PAYLOADS[1],
        marks_modified=True,
    )
    transition(item, "generating", actor=admin_user)
    transition(item, "error", actor=admin_user, reason="LLM said " + PAYLOADS[2])
    return item


def test_it_escapes_item_text_on_the_items_list(client, admin_user, project, hostile_item):
    client.force_login(admin_user)
    html = client.get(f"/projects/{project.slug}/").content.decode()
    assert "&lt;script&gt;alert(" in html
    _assert_escaped(html, "project detail")
    fragment = client.get(
        f"/projects/{project.slug}/", headers={"HX-Request": "true", "HX-Target": "item-table"}
    ).content.decode()
    _assert_escaped(fragment, "item table fragment")


def test_it_escapes_item_text_on_the_item_page(client, admin_user, project, hostile_item):
    client.force_login(admin_user)
    html = client.get(f"/projects/{project.slug}/items/{hostile_item.pk}/").content.decode()
    assert "&lt;svg/onload=alert(&#x27;cot&#x27;)&gt;" in html
    assert "fixed &lt;script&gt;" in html
    _assert_escaped(html, "item detail")


def test_it_escapes_file_names_and_errors_on_the_import_report(client, admin_user, project):
    bad_line = json.dumps({"id": "<script>alert('err')</script>", "question": "<b>x</b>"})
    result = seed_file_import(
        project=project,
        data=bad_line.encode(),
        file_name="<img src=x onerror=alert(1)>.jsonl",
        options=ImportOptions(),
        actor=admin_user,
    )
    assert result.batch.state == "rejected"
    client.force_login(admin_user)
    for url in (
        f"/projects/{project.slug}/import/{result.batch.pk}/",
        f"/projects/{project.slug}/import/",
        f"/projects/{project.slug}/",
    ):
        html = client.get(url).content.decode()
        assert "&lt;img src=x" in html, url
        _assert_escaped(html, url)


def test_it_escapes_an_uploaded_file_name_through_the_browser_form(client, admin_user, project):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("<script>alert('f')</script>.jsonl", b"not json")
    response = client.post(f"/projects/{project.slug}/import/", {"file": upload, "format": "auto"})
    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    _assert_escaped(html, "import report")


def test_it_serves_api_text_as_json_never_html(admin_user, project, hostile_item):
    from tests.api.conftest import token_client

    response = token_client(admin_user).get(
        f"/api/projects/{project.slug}/items/{hostile_item.pk}/"
    )
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["current"]["options"]["A"] == PAYLOADS[1]
