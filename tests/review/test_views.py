import pytest
from django.urls import reverse

from medcot.lifecycle import Status
from review.models import FirstPassReview, Panel, RubricGuide
from review.services.panels import panel_assign
from review.services.queue import queue_claim

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def login(client, user):
    client.force_login(user)
    return client


def test_it_shows_the_first_pass_page_with_the_claimed_item(client, reviewer, make_item):
    item = make_item(version__cot="**Bold** <script>alert(1)</script>")
    response = login(client, reviewer).get(reverse("review:first_pass"))
    assert response.status_code == 200
    body = response.content.decode()
    assert item.external_id in body
    assert "<strong>Bold</strong>" in body and "<script>alert" not in body
    assert 'lang="en"' in body


def test_it_returns_only_the_fragment_to_htmx(client, reviewer, make_item):
    make_item()
    response = login(client, reviewer).get(reverse("review:first_pass"), **HTMX)
    assert response.status_code == 200
    assert b"<html" not in response.content and b"data-first-pass" in response.content


def test_it_forbids_the_first_pass_page_to_outsiders(client, outsider):
    assert login(client, outsider).get(reverse("review:first_pass")).status_code == 403


def test_submit_answers_405_to_get(client, reviewer, make_item):
    item = make_item()
    url = reverse("review:first_pass_submit", args=[item.pk])
    assert login(client, reviewer).get(url).status_code == 405


def test_submit_passes_and_swaps_in_the_next_item(client, reviewer, make_item):
    first, second = make_item(), make_item()
    login(client, reviewer).get(reverse("review:first_pass"))
    response = client.post(
        reverse("review:first_pass_submit", args=[first.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1", "seconds": "12"},
        **HTMX,
    )
    assert response.status_code == 200
    assert second.external_id in response.content.decode()
    first.refresh_from_db()
    assert first.status == Status.REANSWERING
    assert FirstPassReview.objects.get(item=first).seconds_on_item == 12


def test_submit_without_htmx_redirects(client, reviewer, make_item):
    item = make_item()
    response = login(client, reviewer).post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1"},
    )
    assert response.status_code == 302


def test_a_zero_without_fix_or_discard_is_a_clear_error(client, reviewer, make_item):
    item = make_item()
    response = login(client, reviewer).post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "0", "sufficiency": "1"},
        **HTMX,
    )
    assert response.status_code == 422
    assert "choose fix" in response.content.decode()
    item.refresh_from_db()
    assert item.status == Status.FIRST_REVIEW


def test_submit_discards_with_a_reason(client, reviewer, make_item):
    item = make_item()
    login(client, reviewer).post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {
            "relevance": "0",
            "correctness": "1",
            "sufficiency": "1",
            "action": "discard",
            "reason": "Not a medical question",
        },
        **HTMX,
    )
    item.refresh_from_db()
    assert item.status == Status.DISCARDED


def test_submit_refuses_an_item_someone_else_holds(client, reviewer, reviewer_b, make_item):
    item = make_item()
    queue_claim(user=reviewer_b, stage="first_review")
    response = login(client, reviewer).post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1"},
    )
    assert response.status_code == 403


def test_skip_releases_and_moves_on(client, reviewer, make_item):
    first, second = make_item(), make_item()
    login(client, reviewer).get(reverse("review:first_pass"))
    response = client.post(reverse("review:first_pass_skip", args=[first.pk]), **HTMX)
    body = response.content.decode()
    assert second.external_id in body and f"{first.external_id}<" not in body


def test_the_panel_page_is_for_members_only(
    client, make_item, admin_user, expert_a, expert_b, expert_c
):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    url = reverse("review:panel_item", args=[item.pk])
    assert login(client, expert_c).get(url).status_code == 403
    response = login(client, expert_a).get(url)
    assert response.status_code == 200 and b"data-rubric" in response.content


def test_scoring_by_form_records_the_decision(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    data = {f"score_{d}": "2" for d in RubricGuide.objects.first().levels}
    data.update(decision="accept", answer="A")
    response = login(client, expert_a).post(
        reverse("review:panel_score", args=[item.pk]), data, **HTMX
    )
    assert response.status_code == 200
    assert Panel.objects.get(item=item).decisions.count() == 1
    bad = login(client, expert_b).post(
        reverse("review:panel_score", args=[item.pk]), {"decision": "accept"}, **HTMX
    )
    assert bad.status_code == 422
    # Each missing field is named, next to it: the scores and the answer.
    assert b"Medical correctness: give a score of 0, 1 or 2." in bad.content
    assert b'id="rs-err-answer"' in bad.content and b"Answer: choose the option" in bad.content
    assert b"This field is required" not in bad.content


def test_the_admin_assigns_a_panel_by_hand(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    page = login(client, admin_user).get(reverse("review:panel_assign_page", args=[item.pk]))
    assert page.status_code == 200 and b"Expert A" in page.content
    response = client.post(
        reverse("review:panel_assign", args=[item.pk]), {"experts": [expert_a.pk, expert_b.pk]}
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == Status.PANEL_REVIEW


def test_assigning_too_few_experts_is_an_error(client, make_item, admin_user, expert_a):
    item = make_item(status=Status.PANEL)
    response = login(client, admin_user).post(
        reverse("review:panel_assign", args=[item.pk]), {"experts": [expert_a.pk]}
    )
    assert response.status_code == 422 and b"at least 2" in response.content


def test_experts_cannot_assign_panels(client, make_item, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    response = login(client, expert_a).post(
        reverse("review:panel_assign", args=[item.pk]), {"experts": [expert_a.pk, expert_b.pk]}
    )
    assert response.status_code == 403


def test_the_history_page_shows_versions_and_events(client, make_item, admin_user):
    item = make_item()
    response = login(client, admin_user).get(reverse("review:history", args=[item.pk]))
    assert response.status_code == 200
    assert b"v1" in response.content and b"Transitions and events" in response.content


def test_the_overview_is_for_admins(client, admin_user, reviewer, make_item):
    make_item()
    assert login(client, reviewer).get(reverse("review:overview")).status_code == 403
    response = login(client, admin_user).get(reverse("review:overview"))
    assert response.status_code == 200 and b"Queues" in response.content


def test_the_rubric_guide_ships_version_one_and_admins_add_versions(client, admin_user, expert_a):
    response = login(client, expert_a).get(reverse("review:rubric_guide"))
    assert response.status_code == 200 and b"v1" in response.content
    assert login(client, expert_a).get(reverse("review:rubric_guide_edit")).status_code == 403
    guide = RubricGuide.objects.get(language="en", version=1)
    data = {f"{d}_{lv}": text for d, levels in guide.levels.items() for lv, text in levels.items()}
    data.update(introduction="Be strict.", note="Stricter introduction")
    response = login(client, admin_user).post(reverse("review:rubric_guide_edit"), data)
    assert response.status_code == 302
    assert RubricGuide.objects.filter(language="en").order_by("-version").first().version == 2


def test_the_consensus_vote_approves(client, make_item, expert_a, expert_b):
    item = make_item(status=Status.CONSENSUS)
    for expert in (expert_a, expert_b):
        login(client, expert).get(reverse("review:consensus"))
        client.post(
            reverse("review:consensus_vote", args=[item.pk]),
            {"answer": "A", "approve_phrasing": "1"},
            **HTMX,
        )
    item.refresh_from_db()
    assert item.status == Status.APPROVED


def test_a_repeated_submit_counts_once_and_moves_on(client, reviewer, make_item):
    first, second = make_item(), make_item()
    login(client, reviewer).get(reverse("review:first_pass"))
    data = {"relevance": "1", "correctness": "1", "sufficiency": "1"}
    url = reverse("review:first_pass_submit", args=[first.pk])
    client.post(url, data, **HTMX)
    again = client.post(url, data, **HTMX)
    assert again.status_code == 200 and second.external_id in again.content.decode()
    assert FirstPassReview.objects.filter(item=first).count() == 1


def test_skipped_items_come_back_when_nothing_else_is_left(client, reviewer, make_item):
    only = make_item()
    login(client, reviewer).get(reverse("review:first_pass"))
    response = client.post(reverse("review:first_pass_skip", args=[only.pk]), **HTMX)
    assert f'id="item-{only.pk}-title"'.encode() in response.content


def test_the_history_page_keeps_an_open_round_blind(
    client, make_item, admin_user, expert_a, expert_b
):
    from review.services.panels import panel_submit

    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    panel_submit(
        item=item,
        expert=expert_b,
        scores={d: 1 for d in RubricGuide.objects.first().levels},
        decision="revise",
        answer="A",
        comment="Secret remark from B",
    )
    url = reverse("review:history", args=[item.pk])
    assert b"Secret remark from B" not in login(client, expert_a).get(url).content
    assert b"Secret remark from B" in login(client, expert_b).get(url).content
    assert b"Secret remark from B" in login(client, admin_user).get(url).content
