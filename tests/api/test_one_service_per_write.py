"""One service per write, with its guards inside it: each write is taken through the browser's
page and through the API on the same starting state, and both must leave the same rows and
give the same refusal, in the same words (docs/architecture.md).

The browser shows a refusal where its page has room for it (a notice on the queue, an error on
the form); the API answers in its error shape. What is compared is what was written and the
service's own message."""

from html import unescape

import pytest
from django.contrib.messages import get_messages
from django.db import transaction
from django.urls import reverse

from medcot.imports.formats import ImportOptions
from medcot.imports.service import import_batch_create
from medcot.lifecycle import Status
from medcot.models import ImportBatch
from medcot.tasks import import_seed_batch_task
from review.models import FirstPassReview, FirstPassState, Lease, Stage
from review.releases.models import Release
from review.releases.services import release_create
from review.services.first_pass import first_pass_submit
from review.services.queue import queue_next
from tests.api.conftest import assert_error, token_client
from tests.api.test_review_actions import skip_url
from tests.api.test_review_writes import PASS, first_pass_url
from tests.factories import ItemFactory
from tests.releases.conftest import reviewed_item

pytestmark = pytest.mark.django_db

BROWSER_PASS = {"relevance": "1", "correctness": "1", "sufficiency": "1", "action": "pass"}


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def judged(project, reviewer, settings):
    """An item the reviewer claimed and passed; the verdict is held for the undo window."""
    settings.REVIEW_UNDO_SECONDS = 60
    item = ItemFactory(project=project, status=Status.FIRST_REVIEW)
    ItemFactory(project=project, status=Status.FIRST_REVIEW)
    queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    first_pass_submit(
        item=item,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
        confirm_fast=True,
    )
    return item


def rows(item) -> dict:
    return {
        "verdicts": list(
            FirstPassReview.objects.filter(item=item)
            .order_by("id")
            .values_list("reviewer__username", "outcome", "state")
        ),
        "leases": sorted(Lease.objects.filter(item=item).values_list("holder__username", "stage")),
        "status": Item_status(item),
    }


def Item_status(item) -> str:
    item.refresh_from_db()
    return item.status


def both(item, browser, api) -> tuple:
    """Run the browser's request and the API's on the same state, each rolled back after,
    and return (browser response, its rows, API response, its rows)."""
    out = []
    for act in (browser, api):
        savepoint = transaction.savepoint()
        response = act()
        out.extend([response, rows(item)])
        transaction.savepoint_rollback(savepoint)
    return tuple(out)


def notice(response) -> str:
    """The refusal the browser showed: the flash message after a redirect."""
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


# --- First pass -----------------------------------------------------------------------------


def test_a_repeated_verdict_is_refused_alike(client, reviewer, judged):
    client.force_login(reviewer)
    before = rows(judged)
    browser, browser_rows, api, api_rows = both(
        judged,
        lambda: client.post(reverse("review:first_pass_submit", args=[judged.pk]), BROWSER_PASS),
        lambda: token_client(reviewer).post(first_pass_url(judged), PASS, format="json"),
    )
    assert browser_rows == api_rows == before
    assert before["verdicts"] == [("reviewer", "pass", FirstPassState.HELD)]
    assert browser.status_code == 302
    details = assert_error(api, 400, "invalid")
    assert notice(browser) == details["non_field_errors"][0]
    assert "already judged" in notice(browser)


def test_a_repeated_verdict_is_refused_alike_once_it_took_effect(client, reviewer, judged):
    """After the undo window the item has moved on: still the same refusal, not a 404."""
    FirstPassReview.objects.filter(item=judged).update(state=FirstPassState.APPLIED)
    judged.status = Status.REANSWERING
    judged.save(update_fields=["status"])
    client.force_login(reviewer)
    browser, browser_rows, api, api_rows = both(
        judged,
        lambda: client.post(reverse("review:first_pass_submit", args=[judged.pk]), BROWSER_PASS),
        lambda: token_client(reviewer).post(first_pass_url(judged), PASS, format="json"),
    )
    assert browser_rows == api_rows
    details = assert_error(api, 400, "invalid")
    assert notice(browser) == details["non_field_errors"][0]


def test_a_skip_of_a_judged_item_is_refused_alike(client, reviewer, judged):
    client.force_login(reviewer)
    before = rows(judged)
    browser, browser_rows, api, api_rows = both(
        judged,
        lambda: client.post(reverse("review:first_pass_skip", args=[judged.pk])),
        lambda: token_client(reviewer).post(skip_url(judged)),
    )
    # The lease outlives the held verdict; neither path let it go.
    assert browser_rows == api_rows == before
    assert before["leases"] == [("reviewer", Stage.FIRST_REVIEW)]
    details = assert_error(api, 400, "invalid")
    assert notice(browser) == details["non_field_errors"][0]
    assert "undo" in notice(browser)


def test_a_skip_of_an_item_not_held_is_refused_alike(client, reviewer, project):
    item = ItemFactory(project=project, status=Status.FIRST_REVIEW)
    client.force_login(reviewer)
    browser, browser_rows, api, api_rows = both(
        item,
        lambda: client.post(reverse("review:first_pass_skip", args=[item.pk])),
        lambda: token_client(reviewer).post(skip_url(item)),
    )
    assert browser_rows == api_rows
    assert_error(api, 403, "permission_denied")
    assert notice(browser) == api.json()["error"]["message"]
    assert "do not hold" in notice(browser)


def test_a_skip_by_someone_without_a_reviewer_role_is_refused_alike(client, admin_user, project):
    item = ItemFactory(project=project, status=Status.FIRST_REVIEW)
    client.force_login(admin_user)
    browser = client.post(reverse("review:first_pass_skip", args=[item.pk]))
    api = token_client(admin_user).post(skip_url(item))
    assert browser.status_code == 403
    assert_error(api, 403, "permission_denied")


# --- Releases -------------------------------------------------------------------------------


def test_a_duplicate_release_version_is_refused_alike(
    client, admin_user, project, reviewer, expert_a, expert_b
):
    reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])
    release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    client.force_login(admin_user)
    browser = client.post(
        reverse("release_list", args=[project.slug]), {"version": "v1", "license": "cc-by-4.0"}
    )
    api = token_client(admin_user).post(
        f"/api/projects/{project.slug}/releases/",
        {"version": "v1", "license": "cc-by-4.0"},
        format="json",
    )
    assert Release.objects.filter(project=project).count() == 1
    assert browser.status_code == 400
    assert_error(api, 409, "conflict")
    message = api.json()["error"]["message"]
    assert "already exists" in message
    assert message in unescape(browser.content.decode())


# --- Imports --------------------------------------------------------------------------------

CSV = b"id,question,A,B,C,D,E,answer\nq1,Which?,a,b,c,d,e,A\n"


def test_an_import_is_handed_to_a_worker_alike(
    client, admin_user, project, django_capture_on_commit_callbacks, monkeypatch
):
    sent: list[int] = []
    monkeypatch.setattr(import_seed_batch_task, "delay", lambda batch_id: sent.append(batch_id))
    client.force_login(admin_user)
    # The browser: an upload kept for its preview, then confirmed.
    previewed = import_batch_create(
        project=project,
        data=CSV,
        file_name="seeds.csv",
        options=ImportOptions(file_name="seeds.csv"),
        actor=admin_user,
        preview=True,
    )
    url = reverse("import_batch_preview", args=[project.slug, previewed.pk])
    form = client.get(url).context["form"]
    data = {name: field.value() for name, field in ((n, form[n]) for n in form.fields)}
    data = {k: v for k, v in data.items() if v is not None}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {**data, "action": "import"})
        assert response.status_code == 302, response.content
        # A second confirmation (a repeated post) sends nothing more.
        client.post(url, {**data, "action": "import"})
    # The API: the upload itself.
    with django_capture_on_commit_callbacks(execute=True):
        upload = token_client(admin_user).post(
            f"/api/projects/{project.slug}/imports/",
            {"file": _file(CSV)},
            format="multipart",
        )
    assert upload.status_code == 201, upload.content
    via_api = ImportBatch.objects.get(pk=upload.json()["id"])
    previewed.refresh_from_db()
    assert sent == [previewed.pk, via_api.pk]
    assert previewed.state == via_api.state == ImportBatch.State.PENDING


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("seeds.csv", data, content_type="text/csv")


# --- Access: one order of 403 and 404 -------------------------------------------------------


@pytest.mark.parametrize(
    ("browser_url", "api_url"),
    [
        ("/projects/{slug}/runs/", "/api/projects/{slug}/runs/"),
        ("/projects/{slug}/releases/", "/api/projects/{slug}/releases/"),
        ("/projects/{slug}/runs/999999/", "/api/projects/{slug}/runs/999999/"),
    ],
    ids=["runs", "releases", "run"],
)
def test_admin_pages_refuse_in_one_order(
    client, admin_user, reviewer, project, browser_url, api_url
):
    """A reviewer is refused (403) whether or not the project exists; an admin learns a
    project or run is missing (404)."""
    for slug, who, expected in [
        (project.slug, reviewer, 403),
        ("no-such-project", reviewer, 403),
        ("no-such-project", admin_user, 404),
    ]:
        client.force_login(who)
        assert client.get(browser_url.format(slug=slug)).status_code == expected, (slug, who)
        assert token_client(who).get(api_url.format(slug=slug)).status_code == expected
    client.force_login(admin_user)
    if "999999" in browser_url:
        assert client.get(browser_url.format(slug=project.slug)).status_code == 404
        assert token_client(admin_user).get(api_url.format(slug=project.slug)).status_code == 404
