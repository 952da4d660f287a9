"""The review screens' server side: one tag for item text, the verdict block, the panel page's
texts by round state, the panels page's bulk action, history in words, and the error pages."""

import logging

import pytest
from django.test import override_settings
from django.urls import reverse

from medcot.lifecycle import Status
from medcot.models import AuthorKind, Event
from medcot.services import item_version_create
from medcot.templatetags.medcot_format import event_label, status_label
from review.models import Panel, RubricDimension
from review.services.panels import panel_assign, panel_submit
from review.templatetags.review_tags import item_text

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_item_text_keeps_line_breaks_and_lists_and_shows_html_as_text():
    html = item_text(
        "Analysis:\nA is wrong\nB is right\n1) first\n2) second\nSo B.<script>x</script>"
    )
    assert html.count("<br>") == 2
    assert "<ol>\n<li>first</li>\n<li>second</li>\n</ol>" in html
    assert "<p>So B.&lt;script&gt;x&lt;/script&gt;</p>" in html
    assert "<script>" not in html


def test_item_text_leaves_fenced_code_alone():
    html = item_text("```\n1. not a list\n```")
    assert "<ol>" not in html and "1. not a list" in html


def test_history_words_for_codes():
    assert str(event_label("version_created")) == "new version"
    assert event_label("something_new") == "something new"
    assert status_label("first_review") == "First-pass review"
    assert status_label("nope") == "nope"


def test_the_first_pass_page_flags_a_cot_off_the_key(client, reviewer, make_item):
    item = make_item()
    item_version_create(
        item=item, author_kind=AuthorKind.LLM, reason="cot", cot="Thinking.\nThe answer is (D)."
    )
    client.force_login(reviewer)
    body = client.get(reverse("review:first_pass")).content.decode()
    assert 'data-mismatch="D"' in body
    assert "concludes on D, not on the key A" in body
    assert 'name="confirm_mismatch"' in body
    # A pass without the confirmation is refused in the form's words.
    response = client.post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1", "seconds": "30"},
        **HTMX,
    )
    assert response.status_code == 422
    assert b"concludes on D, not on the key A" in response.content


def test_a_quick_pass_in_the_browser_shows_the_confirmation(client, reviewer, make_item, project):
    project.min_pass_seconds = 5
    project.save()
    item = make_item()
    client.force_login(reviewer)
    client.get(reverse("review:first_pass"))
    url = reverse("review:first_pass_submit", args=[item.pk])
    data = {"relevance": "1", "correctness": "1", "sufficiency": "1", "seconds": "1"}
    response = client.post(url, data, **HTMX)
    assert response.status_code == 422
    body = response.content.decode()
    assert "this project asks for at least 5 s" in body
    # The quick-pass confirmation is shown (not hidden) beside the controls.
    assert "data-fast-confirm" in body and "data-fast-confirm hidden" not in body
    response = client.post(url, {**data, "confirm_fast": "1"}, **HTMX)
    assert response.status_code == 200


def test_the_panel_page_tells_the_round_state(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    scores = dict.fromkeys(RubricDimension.values, 2)
    panel_submit(item=item, expert=expert_a, scores=scores, decision="accept", answer="A")
    client.force_login(expert_a)
    url = reverse("review:panel_item", args=[item.pk])
    body = client.get(url).content.decode()
    assert "Your scores for round 1 are in (1 of 2 submitted)" in body
    panel_submit(
        item=item, expert=expert_b, scores=scores, decision="discard", answer="A", comment="No"
    )
    assert Panel.objects.get(item=item).state == "adjudication"
    body = client.get(url).content.decode()
    assert "once everyone has submitted" not in body
    assert "Waiting for an admin decision." in body
    assert "Round 1 ended without a majority" in body


def test_the_consensus_page_carries_the_next_item(client, expert_a, make_item):
    first, second = make_item(status=Status.CONSENSUS), make_item(status=Status.CONSENSUS)
    client.force_login(expert_a)
    body = client.get(reverse("review:consensus")).content.decode()
    assert f'<div id="rv-current" data-item="{first.pk}">' in body
    assert f'<template id="rv-next" data-item="{second.pk}">' in body


def test_the_bulk_action_is_for_admins_and_reports_what_it_did(
    client, make_item, admin_user, expert_a, expert_b
):
    items = [make_item(status=Status.PANEL) for _ in range(3)]
    url = reverse("review:panels_bulk")
    client.force_login(expert_a)
    assert client.post(url, {"action": "auto", "all_matching": "1"}).status_code == 403
    client.force_login(admin_user)
    assert client.get(url).status_code == 405
    response = client.post(url, {"action": "auto"})
    assert response.status_code == 422 and b"Select items first" in response.content
    response = client.post(url, {"action": "auto", "items": [items[0].pk, items[1].pk]})
    assert response.status_code == 200
    assert b"2 items assigned" in response.content
    assert Panel.objects.filter(item__in=items).count() == 2
    response = client.post(url, {"action": "auto", "all_matching": "1"})
    assert b"1 item assigned" in response.content


def test_the_history_page_speaks_in_words(client, make_item, admin_user):
    item = make_item(status=Status.PANEL)
    client.force_login(admin_user)
    Event.objects.create(project=item.project, item=item, kind="version_created")
    body = client.get(reverse("review:history", args=[item.pk])).content.decode()
    assert "version_created" not in body and "New version" in body


def test_error_pages_come_in_the_site_layout(client, reviewer, caplog):
    client.force_login(reviewer)
    with caplog.at_level(logging.WARNING):
        response = client.get(reverse("review:overview"))
    assert response.status_code == 403
    body = response.content.decode()
    assert "You do not have access to this page" in body and 'class="mainnav"' in body
    forbidden = [r for r in caplog.records if "Forbidden" in r.getMessage()]
    assert len(forbidden) == 1 and forbidden[0].exc_info is None
    response = client.get("/projects/no-such-project/")
    assert response.status_code == 404 and b"This page does not exist" in response.content
    # An htmx request gets a fragment, not a second page inside the slot.
    response = client.get(reverse("review:overview"), **HTMX)
    assert response.status_code == 403 and b"<html" not in response.content


@override_settings(DEBUG=True)
def test_with_debug_on_an_unknown_url_gets_the_site_page_not_the_url_list(client, reviewer):
    client.force_login(reviewer)
    response = client.get("/no/such/url/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "This page does not exist" in body
    assert "URLconf" not in body and "django-admin/" not in body
