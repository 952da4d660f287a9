"""No anchoring: nobody sees the machine judge's opinion of an item before their own verdict,
in any page, partial or API payload; afterwards it is a second opinion with the differing
dimensions marked, and an expert can mark a rationale helpful or wrong."""

import pytest
from django.test import override_settings
from django.urls import reverse

from generation.models import JUDGE_DIMENSIONS, JudgeScore, LLMProfile, PromptVersion
from medcot.lifecycle import Status
from review.models import JudgeFeedback, RubricDimension
from review.services.first_pass import first_pass_submit
from review.services.panels import panel_assign
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "JUDGE-RATIONALE-7Q"


def judge_scores(item, **scores) -> JudgeScore:
    profile, _ = LLMProfile.objects.get_or_create(
        name="judge", defaults={"base_url": "http://127.0.0.1:9/v1", "model": "sim-judge"}
    )
    prompt, _ = PromptVersion.objects.get_or_create(
        task="judge", variant="default", language="en", number=1, defaults={"template": "x"}
    )
    values = dict.fromkeys(JUDGE_DIMENSIONS, 2) | scores
    return JudgeScore.objects.create(
        item=item,
        version=item.current_version,
        profile=profile,
        prompt_version=prompt,
        model="sim-judge",
        rationales={d: f"{SECRET} {d}" for d in JUDGE_DIMENSIONS},
        first_wrong_step=2,
        answer="A",
        **values,
    )


def _no_judge(text: str) -> None:
    assert SECRET not in text
    assert "Second opinion" not in text and "judge-opinion" not in text


def test_the_first_pass_screen_and_api_hide_the_judge_until_the_reviewer_submits(
    client, reviewer, make_item
):
    item = make_item(version__cot="Step one.\nThe answer is (A).")
    judge_scores(item, medical_correctness=0)
    client.force_login(reviewer)
    page = client.get(reverse("review:first_pass"))
    assert item.external_id in page.content.decode()
    _no_judge(page.content.decode())
    _no_judge(client.get(reverse("review:first_pass"), **HTMX).content.decode())
    # The opinion page and API answer 404, as for an item the judge never scored.
    assert client.get(reverse("review:judge:opinion", args=[item.pk])).status_code == 404
    api = token_client(reviewer)
    claimed = api.post(reverse("api-first-pass-next"), {}, format="json")
    assert claimed.status_code == 200 and claimed.json()["item"]["id"] == item.pk
    _no_judge(claimed.content.decode())
    assert api.get(reverse("api-item-judge-opinion", args=[item.pk])).status_code == 404

    response = client.post(
        reverse("review:first_pass_submit", args=[item.pk]),
        {"relevance": "1", "correctness": "1", "sufficiency": "1", "seconds": "60"},
        **HTMX,
    )
    assert response.status_code == 200
    # After submitting: the screen offers the second opinion; the page shows it with the
    # dimension where they differ (the reviewer passed correctness, the judge scored 0).
    assert reverse("review:judge:opinion", args=[item.pk]) in response.content.decode()
    _no_judge(response.content.decode())
    body = client.get(reverse("review:judge:opinion", args=[item.pk])).content.decode()
    assert SECRET in body and body.count("data-differs") == 1
    payload = api.get(reverse("api-item-judge-opinion", args=[item.pk])).json()
    assert payload["machine_scores"] is True and payload["model"] == "sim-judge"
    rows = {row["dimension"]: row for row in payload["dimensions"]}
    assert rows["medical_correctness"] == {
        "dimension": "medical_correctness",
        "judge": 0,
        "mine": 1,
        "differs": True,
        "rationale": f"{SECRET} medical_correctness",
        "feedback": None,
    }
    assert (
        rows["terminology_clarity"]["mine"] is None and not rows["terminology_clarity"]["differs"]
    )


def test_a_verdict_still_in_its_undo_window_does_not_open_the_judge(client, reviewer, make_item):
    item = make_item(version__cot="Step one.\nThe answer is (A).")
    judge_scores(item)
    client.force_login(reviewer)
    client.get(reverse("review:first_pass"))
    with override_settings(REVIEW_UNDO_SECONDS=60):
        response = client.post(
            reverse("review:first_pass_submit", args=[item.pk]),
            {"relevance": "1", "correctness": "1", "sufficiency": "1", "seconds": "60"},
            **HTMX,
        )
        body = response.content.decode()
        assert "Undo" in body
        _no_judge(body)
        assert reverse("review:judge:opinion", args=[item.pk]) not in body
        # Reading the judge, undoing and answering again is what the rule prevents.
        assert client.get(reverse("review:judge:opinion", args=[item.pk])).status_code == 404
        api = token_client(reviewer)
        assert api.get(reverse("api-item-judge-opinion", args=[item.pk])).status_code == 404
        client.post(reverse("review:first_pass_undo"), **HTMX)
    assert client.get(reverse("review:judge:opinion", args=[item.pk])).status_code == 404


def test_the_panel_page_hides_the_judge_until_the_expert_scores_then_marks_differences(
    client, admin_user, expert_a, expert_b, make_item
):
    item = make_item(status=Status.PANEL, version__cot="Step one.\nStep two.\nThe answer is (A).")
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    judge_scores(item, reasoning_structure=1, clinical_utility=0)
    url = reverse("review:panel_item", args=[item.pk])
    client.force_login(expert_a)
    _no_judge(client.get(url).content.decode())
    _no_judge(client.get(url, **HTMX).content.decode())
    api = token_client(expert_a)
    assert api.get(reverse("api-item-judge-opinion", args=[item.pk])).status_code == 404
    # Feedback before one's own verdict is refused like a missing opinion.
    refused = api.post(
        reverse("api-item-judge-feedback", args=[item.pk]),
        {"dimension": "clinical_utility", "verdict": "wrong"},
        format="json",
    )
    assert refused.status_code == 404 and not JudgeFeedback.objects.exists()

    scores = dict.fromkeys(RubricDimension.values, 2) | {"clinical_utility": 1}
    response = client.post(
        reverse("review:panel_score", args=[item.pk]),
        {
            **{f"score_{d}": s for d, s in scores.items()},
            "decision": "accept",
            "answer": "A",
            "seconds": "90",
        },
    )
    assert response.status_code in (200, 302)
    body = client.get(url).content.decode()
    assert SECRET in body
    # Reasoning structure (2 vs 1) and clinical utility (1 vs 0) differ; the others agree.
    assert body.count("data-differs") == 2
    # The other expert, who has not scored, still sees nothing.
    client.force_login(expert_b)
    _no_judge(client.get(url).content.decode())
    assert (
        token_client(expert_b).get(reverse("api-item-judge-opinion", args=[item.pk])).status_code
        == 404
    )

    # Expert A marks the rationales: once through the page (htmx), once through the API.
    client.force_login(expert_a)
    marked = client.post(
        reverse("review:judge:feedback", args=[item.pk]),
        {
            "judge_score": JudgeScore.objects.get().pk,
            "dimension": "clinical_utility",
            "verdict": "wrong",
        },
        **HTMX,
    )
    assert marked.status_code == 200 and "judge-opinion" in marked.content.decode()
    via_api = api.post(
        reverse("api-item-judge-feedback", args=[item.pk]),
        {"dimension": "reasoning_structure", "verdict": "helpful"},
        format="json",
    )
    assert via_api.status_code == 201
    assert dict(JudgeFeedback.objects.values_list("dimension", "verdict")) == {
        "clinical_utility": "wrong",
        "reasoning_structure": "helpful",
    }
    again = api.post(
        reverse("api-item-judge-feedback", args=[item.pk]),
        {"dimension": "clinical_utility", "verdict": "helpful"},
        format="json",
    )
    assert again.status_code == 400


def test_the_consensus_screen_never_shows_the_judge(client, expert_a, make_item):
    item = make_item(status=Status.CONSENSUS)
    judge_scores(item)
    client.force_login(expert_a)
    body = client.get(reverse("review:consensus")).content.decode()
    assert item.external_id in body
    _no_judge(body)


def test_a_reviewer_cannot_mark_rationales_and_wrong_methods_are_refused(
    client, reviewer, make_item
):
    item = make_item()
    judge_scores(item)
    first_pass_submit(
        item=item,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
        seconds_on_item=60,
    )
    client.force_login(reviewer)
    assert client.get(reverse("review:judge:opinion", args=[item.pk])).status_code == 200
    assert client.get(reverse("review:judge:feedback", args=[item.pk])).status_code == 405
    denied = client.post(
        reverse("review:judge:feedback", args=[item.pk]),
        {"dimension": "clinical_utility", "verdict": "wrong"},
    )
    assert denied.status_code == 403
    api = token_client(reviewer)
    assert (
        api.post(
            reverse("api-item-judge-feedback", args=[item.pk]),
            {"dimension": "clinical_utility", "verdict": "wrong"},
            format="json",
        ).status_code
        == 403
    )


def test_an_expert_api_payload_of_a_panel_item_carries_no_judge(
    expert_a, expert_b, admin_user, make_item
):
    item = make_item(status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    judge_scores(item)
    api = token_client(expert_a)
    detail = api.get(reverse("api-item", args=[item.project.slug, item.pk]))
    assert detail.status_code == 200
    _no_judge(detail.content.decode())
    posted = api.post(
        reverse("api-panel-scores", args=[item.pk]),
        {
            "scores": dict.fromkeys(RubricDimension.values, 2),
            "decision": "accept",
            "answer": "A",
        },
        format="json",
    )
    assert posted.status_code == 201
    # The score answer itself stays about the panel; the opinion is asked for separately.
    _no_judge(posted.content.decode())
    assert api.get(reverse("api-item-judge-opinion", args=[item.pk])).status_code == 200
