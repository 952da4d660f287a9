import pytest
from django.test import override_settings
from django.urls import reverse

from medcot.lifecycle import Status
from medcot.models import AuthorKind
from medcot.services import item_version_create
from review.models import FirstPassReview, Panel, PanelState, RubricDimension
from review.services.panels import panel_assign, panel_submit

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def revising_panel(item, admin, experts):
    panel_assign(item=item, experts=experts, actor=admin)
    for expert in experts:
        panel_submit(
            item=item,
            expert=expert,
            scores=dict.fromkeys(RubricDimension.values, 1),
            decision="revise",
            answer="A",
            comment="Step 2 is vague",
        )
    return Panel.objects.get(item=item)


@override_settings(REVIEW_UNDO_SECONDS=30)
def test_undo_puts_the_item_back_on_screen(client, reviewer, make_item):
    first, _second = make_item(), make_item()
    client.force_login(reviewer)
    client.get(reverse("review:first_pass"))
    response = client.post(
        reverse("review:first_pass_submit", args=[first.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1"},
        **HTMX,
    )
    assert b"Undo" in response.content
    response = client.post(reverse("review:first_pass_undo"), **HTMX)
    assert response.status_code == 200
    assert f'id="item-{first.pk}-title"'.encode() in response.content
    assert FirstPassReview.objects.get(item=first).state == "undone"


def test_undo_with_nothing_to_undo_is_a_clear_error(client, reviewer):
    client.force_login(reviewer)
    response = client.post(reverse("review:first_pass_undo"), **HTMX)
    assert response.status_code == 422 and b"nothing left to undo" in response.content
    # Nothing was ever submitted, so the page must not claim a submission took effect.
    assert b"you have not submitted a review yet" in response.content
    assert b"taken effect" not in response.content
    assert client.get(reverse("review:first_pass_undo")).status_code == 405


@override_settings(REVIEW_UNDO_SECONDS=0)
def test_undo_after_the_submission_took_effect_says_so(client, reviewer, make_item):
    item = make_item()
    client.force_login(reviewer)
    client.get(reverse("review:first_pass"))
    client.post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1"},
        **HTMX,
    )
    assert FirstPassReview.objects.get(item=item).state == "applied"
    response = client.post(reverse("review:first_pass_undo"), **HTMX)
    assert response.status_code == 422
    assert b"your last submission has taken effect" in response.content


def test_a_member_revises_and_a_new_round_starts(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    page = client.get(reverse("review:panel_item", args=[item.pk]))
    assert b"The panel asks for a revision" in page.content
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]),
        {"cot": "1. ECG within 10 minutes.\n2. Aspirin.", "answer": "A", "reason": "Clearer"},
        **HTMX,
    )
    assert response.status_code == 200
    panel = Panel.objects.get(item=item)
    assert (panel.round, panel.state) == (2, PanelState.SCORING)


def test_a_revision_without_a_reason_is_refused(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]), {"cot": "x", "answer": "A"}, **HTMX
    )
    assert response.status_code == 422
    assert Panel.objects.get(item=item).round == 1


@pytest.mark.parametrize("htmx", [True, False])
def test_a_revision_whose_key_names_no_option_is_a_clear_error(
    client, make_item, admin_user, expert_a, expert_b, htmx
):
    item = make_item(status=Status.PANEL)  # four options: A to D
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]),
        {"cot": "1. ECG.", "answer": "E", "reason": "Key is E"},
        **(HTMX if htmx else {}),
    )
    assert response.status_code == 422
    assert b"The key must name one of the options." in response.content
    panel = Panel.objects.get(item=item)
    assert (panel.round, panel.state) == (1, PanelState.REVISING)
    assert item.versions.count() == 1


def test_a_member_revises_the_stem_and_options_from_the_panel_page(
    client, make_item, admin_user, expert_a, expert_b
):
    item = make_item(status=Status.PANEL)  # four options: A to D
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    page = client.get(reverse("review:panel_item", args=[item.pk])).content.decode()
    assert 'name="stem"' in page and 'name="option_e"' in page
    before = item.current_version
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]),
        {
            "stem": "A 54-year-old man has had crushing chest pain for 40 minutes. First step?",
            "option_a": before.option_a,
            "option_b": before.option_b,
            "option_c": before.option_c,
            "option_d": before.option_d,
            "option_e": "  Observe  ",
            "cot": "1. ECG within 10 minutes.",
            "answer": "A",
            "reason": "Clearer vignette, a fifth option",
        },
        **HTMX,
    )
    assert response.status_code == 200
    item.refresh_from_db()
    version = item.current_version
    assert version.stem.startswith("A 54-year-old man")
    assert version.options["E"] == "Observe" and version.options["A"] == before.option_a
    assert Panel.objects.get(item=item).round == 2


def test_a_revision_that_empties_an_option_is_a_clear_error(
    client, make_item, admin_user, expert_a, expert_b
):
    item = make_item(status=Status.PANEL)
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    before = item.current_version
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]),
        {
            "stem": before.stem,
            "option_a": before.option_a,
            "option_b": "   ",
            "option_c": before.option_c,
            "option_d": before.option_d,
            "option_e": "",
            "cot": "1. ECG.",
            "answer": "A",
            "reason": "Dropped B",
        },
        **HTMX,
    )
    assert response.status_code == 422
    assert b"Options A to D are required; B is empty." in response.content
    assert item.versions.count() == 1
    assert Panel.objects.get(item=item).round == 1


def test_a_revision_that_changes_nothing_is_a_clear_error(
    client, make_item, admin_user, expert_a, expert_b
):
    item = make_item(status=Status.PANEL)
    item_version_create(item=item, author_kind=AuthorKind.LLM, reason="draft", cot="Same")
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_a)
    response = client.post(
        reverse("review:panel_revise", args=[item.pk]),
        {"cot": "  Same ", "answer": "A", "reason": "Tidy"},
        **HTMX,
    )
    assert response.status_code == 422 and b"The revision changes nothing." in response.content
    assert Panel.objects.get(item=item).round == 1


def test_a_guided_regeneration_starts_the_next_round_when_it_arrives(
    client, make_item, admin_user, expert_a, expert_b
):
    item = make_item(status=Status.PANEL)
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(expert_b)
    response = client.post(
        reverse("review:panel_regenerate", args=[item.pk]), {"guidance": "Explain step 2"}
    )
    assert response.status_code == 302
    panel = Panel.objects.get(item=item)
    assert panel.state == PanelState.REGENERATING
    # The generation side appends the guided version; the next visit starts round 2.
    item_version_create(
        item=item,
        author_kind=AuthorKind.LLM_GUIDED,
        reason="guided",
        cot="Better CoT",
        marks_modified=True,
    )
    client.get(reverse("review:panel_item", args=[item.pk]))
    panel.refresh_from_db()
    assert (panel.round, panel.state) == (2, PanelState.SCORING)


def test_outsiders_cannot_revise_or_regenerate(
    client, make_item, admin_user, expert_a, expert_b, reviewer
):
    item = make_item(status=Status.PANEL)
    revising_panel(item, admin_user, [expert_a, expert_b])
    client.force_login(reviewer)
    assert client.post(reverse("review:panel_regenerate", args=[item.pk])).status_code == 403
    assert client.post(reverse("review:panel_revise", args=[item.pk])).status_code == 403


def test_an_admin_discards_a_consensus_item_with_a_reason(client, make_item, admin_user, expert_a):
    item = make_item(status=Status.CONSENSUS)
    url = reverse("review:adjudicate", args=[item.pk])
    client.force_login(expert_a)
    assert client.post(url, {"outcome": "discard", "reason": "x"}).status_code == 403
    client.force_login(admin_user)
    assert client.get(url).status_code == 405
    response = client.post(url, {"outcome": "discard", "reason": ""}, **HTMX)
    assert response.status_code == 422
    response = client.post(url, {"outcome": "discard", "reason": "Experts split 2–2"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == Status.DISCARDED and item.status_reason == "Experts split 2–2"


def test_consensus_skip_hands_over_the_next_item(client, make_item, expert_a):
    first, second = make_item(status=Status.CONSENSUS), make_item(status=Status.CONSENSUS)
    client.force_login(expert_a)
    client.get(reverse("review:consensus"))
    response = client.post(reverse("review:consensus_skip", args=[first.pk]), **HTMX)
    assert f'id="item-{second.pk}-title"'.encode() in response.content


def test_my_queue_lists_the_experts_open_panels(client, make_item, admin_user, expert_a, expert_b):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    client.force_login(expert_a)
    response = client.get(reverse("review:my_queue"))
    assert response.status_code == 200
    assert item.external_id.encode() in response.content and b"score round" in response.content
