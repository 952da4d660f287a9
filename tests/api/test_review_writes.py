"""The review workflow through the API: claim, first-pass verdicts, rubric scores, consensus
votes, held items, the release diff and a run's LLM calls. Outcomes are read back from the
database, refusals are checked for their status and error body."""

import pytest

from generation.models import LLMCall
from generation.services import run_start
from medcot.lifecycle import Status, transition
from review.models import (
    ConsensusVote,
    FirstPassReview,
    FirstPassState,
    Lease,
    PanelDecision,
    RubricDimension,
    RubricScore,
    Stage,
)
from review.releases.services import release_build, release_create
from review.services.panels import panel_assign
from tests.api.conftest import assert_error, token_client
from tests.factories import ItemFactory
from tests.releases.conftest import reviewed_item

pytestmark = pytest.mark.django_db

NEXT = "/api/review/first-pass/next/"
ALL_TWO = dict.fromkeys(RubricDimension.values, 2)


def first_pass_url(item) -> str:
    return f"/api/review/items/{item.pk}/first-pass/"


def scores_url(item) -> str:
    return f"/api/review/items/{item.pk}/scores/"


def consensus_url(item) -> str:
    return f"/api/review/items/{item.pk}/consensus/"


@pytest.fixture
def immediate(settings):
    # No undo window: a verdict takes effect as it is submitted.
    settings.REVIEW_UNDO_SECONDS = 0


@pytest.fixture
def panel_item(project, admin_user, expert_a, expert_b):
    item = ItemFactory(project=project, status=Status.REANSWERING)
    transition(item, Status.PANEL, reason="five strikes")
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    item.refresh_from_db()
    return item


# --- Claim ---------------------------------------------------------------------------------


def test_it_claims_the_next_item_and_the_one_after_it(reviewer_api, reviewer, queued):
    response = reviewer_api.post(NEXT, {}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["item"]["id"] == queued[0].pk
    assert body["following"]["id"] == queued[1].pk
    held = set(
        Lease.objects.filter(holder=reviewer, stage=Stage.FIRST_REVIEW).values_list(
            "item_id", flat=True
        )
    )
    assert held == {queued[0].pk, queued[1].pk}
    # Asking again is a reload: the same items, no third lease.
    again = reviewer_api.post(NEXT, {}, format="json").json()
    assert (again["item"]["id"], again["following"]["id"]) == (queued[0].pk, queued[1].pk)
    assert Lease.objects.filter(holder=reviewer).count() == 2


def test_it_answers_an_empty_queue_with_nulls(reviewer_api, project):
    response = reviewer_api.post(NEXT, {"project": project.slug}, format="json")
    assert response.status_code == 200
    assert response.json() == {"item": None, "following": None}


def test_it_refuses_a_claim_to_the_wrong_people_and_methods(
    anon_api, outsider_api, admin_api, reviewer_api, queued
):
    assert_error(anon_api.post(NEXT, {}, format="json"), 401, "not_authenticated")
    assert_error(outsider_api.post(NEXT, {}, format="json"), 403, "permission_denied")
    assert_error(admin_api.post(NEXT, {}, format="json"), 403, "permission_denied")
    assert_error(reviewer_api.get(NEXT), 405, "method_not_allowed")
    details = assert_error(
        reviewer_api.post(NEXT, {"project": "no spaces!"}, format="json"), 400, "invalid"
    )
    assert "project" in details
    assert_error(reviewer_api.post(NEXT, {"project": "no-such"}, format="json"), 404, "not_found")
    assert not Lease.objects.exists()


# --- First pass ----------------------------------------------------------------------------

PASS = {"relevance": True, "correctness": True, "sufficiency": True, "action": "pass"}


def test_it_passes_an_item_into_reanswering(reviewer_api, reviewer, queued, immediate):
    item = queued[0]
    response = reviewer_api.post(first_pass_url(item), PASS, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["outcome"], body["state"], body["item_status"]) == (
        "pass",
        "applied",
        "reanswering",
    )
    review = FirstPassReview.objects.get(pk=body["id"])
    assert review.reviewer == reviewer and review.state == FirstPassState.APPLIED
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert item.current_version.number == 1


def test_it_holds_a_verdict_for_the_undo_window(reviewer_api, queued, settings):
    settings.REVIEW_UNDO_SECONDS = 60
    item = queued[0]
    body = reviewer_api.post(first_pass_url(item), PASS, format="json").json()
    assert (body["state"], body["item_status"]) == ("held", "first_review")
    item.refresh_from_db()
    assert item.status == Status.FIRST_REVIEW


def test_it_applies_a_fix_as_a_new_version(reviewer_api, reviewer, queued, immediate):
    item = queued[0]
    fix = {
        "stem": "A 54-year-old man has crushing chest pain for 40 minutes. First step?",
        "options": {"A": "Aspirin and ECG", "B": "Discharge", "C": "Ultrasound", "D": "Antacid"},
        "answer": "A",
        "cot": "ST elevation needs aspirin and an ECG first.",
    }
    payload = {
        **PASS,
        "sufficiency": False,
        "action": "fix",
        "reason": "The CoT was empty.",
        "fix": fix,
    }
    response = reviewer_api.post(first_pass_url(item), payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["outcome"] == "fixed"
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    version = item.current_version
    assert version.number == 2 and version.author == reviewer
    assert version.stem == fix["stem"] and version.cot == fix["cot"]
    assert FirstPassReview.objects.get(item=item).fix_version == version


def test_it_discards_an_item_with_a_reason(reviewer_api, queued, immediate):
    item = queued[0]
    payload = {
        **PASS,
        "relevance": False,
        "action": "discard",
        "reason": "Not a clinical question.",
    }
    response = reviewer_api.post(first_pass_url(item), payload, format="json")
    assert response.status_code == 201, response.json()
    item.refresh_from_db()
    assert item.status == Status.DISCARDED


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "relevance"),
        ({**PASS, "relevance": "maybe"}, "relevance"),
        ({**PASS, "action": "skip"}, "action"),
        ({**PASS, "action": "fix", "reason": "x", "fix": {"stem": "s"}}, "fix"),
        (
            {
                **PASS,
                "action": "fix",
                "reason": "x",
                "fix": {"stem": "s", "options": {"Z": "z"}, "answer": "A", "cot": ""},
            },
            "fix",
        ),
    ],
)
def test_it_rejects_malformed_verdicts(reviewer_api, queued, payload, field):
    details = assert_error(
        reviewer_api.post(first_pass_url(queued[0]), payload, format="json"), 400, "invalid"
    )
    assert field in details
    assert not FirstPassReview.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {**PASS, "correctness": False},  # a 0 cannot pass
        {**PASS, "correctness": False, "action": "discard"},  # a discard needs a reason
        {**PASS, "action": "fix", "reason": "Better wording."},  # a fix needs the edit
        {**PASS, "action": "discard", "reason": "x"},  # all ones cannot be discarded
    ],
)
def test_it_passes_on_the_workflow_rules_as_400(reviewer_api, queued, payload):
    details = assert_error(
        reviewer_api.post(first_pass_url(queued[0]), payload, format="json"), 400, "invalid"
    )
    assert details["non_field_errors"]
    queued[0].refresh_from_db()
    assert queued[0].status == Status.FIRST_REVIEW
    assert not FirstPassReview.objects.exists()


def test_it_refuses_first_pass_to_the_wrong_people(
    anon_api, outsider_api, admin_api, reviewer_api, expert_api, expert_a, queued
):
    item = queued[0]
    assert_error(anon_api.post(first_pass_url(item), PASS, format="json"), 401, "not_authenticated")
    assert_error(
        outsider_api.post(first_pass_url(item), PASS, format="json"), 403, "permission_denied"
    )
    assert_error(
        admin_api.post(first_pass_url(item), PASS, format="json"), 403, "permission_denied"
    )
    assert_error(reviewer_api.get(first_pass_url(item)), 405, "method_not_allowed")
    # The expert holds the item now: the reviewer may not judge it.
    expert_api.post(NEXT, {}, format="json")
    assert Lease.objects.filter(item=item, holder=expert_a).exists()
    assert_error(
        reviewer_api.post(first_pass_url(item), PASS, format="json"), 403, "permission_denied"
    )
    assert_error(
        reviewer_api.post("/api/review/items/999999/first-pass/", PASS, format="json"),
        404,
        "not_found",
    )
    assert not FirstPassReview.objects.exists()


def test_it_refuses_a_second_verdict_and_items_past_first_pass(
    reviewer_api, expert_api, queued, immediate
):
    item = queued[0]
    assert reviewer_api.post(first_pass_url(item), PASS, format="json").status_code == 201
    # The reviewer's own verdict is the answer to a repeat, as on the browser's page.
    again = reviewer_api.post(first_pass_url(item), PASS, format="json")
    assert "already judged" in assert_error(again, 400, "invalid")["non_field_errors"][0]
    # For anyone else the item moved on: it is no longer at first review.
    assert_error(expert_api.post(first_pass_url(item), PASS, format="json"), 404, "not_found")
    assert FirstPassReview.objects.filter(item=item).count() == 1


# --- Rubric scores -------------------------------------------------------------------------

SCORE = {"scores": ALL_TWO, "decision": "accept", "answer": "A"}


def test_it_keeps_scores_blind_until_the_round_is_complete(panel_item, expert_a, expert_b):
    first = token_client(expert_a).post(scores_url(panel_item), SCORE, format="json")
    assert first.status_code == 201, first.json()
    [round_] = first.json()["rounds"]
    assert round_["complete"] is False
    assert (round_["submitted_count"], round_["expected_count"]) == (1, 2)
    assert [d["expert"] for d in round_["decisions"]] == ["expert_a"]
    assert round_["decisions"][0]["scores"] == ALL_TWO
    assert RubricScore.objects.filter(item=panel_item, expert=expert_a).count() == 5

    low = {**SCORE, "scores": dict.fromkeys(RubricDimension.values, 1)}
    second = token_client(expert_b).post(scores_url(panel_item), low, format="json")
    assert second.status_code == 201, second.json()
    [round_] = second.json()["rounds"]
    assert round_["complete"] is True
    seen = {d["expert"]: d["scores"] for d in round_["decisions"]}
    assert seen == {"expert_a": ALL_TWO, "expert_b": dict.fromkeys(RubricDimension.values, 1)}
    assert PanelDecision.objects.filter(item=panel_item).count() == 2


def test_it_hides_a_first_scorer_from_the_second_before_they_submit(panel_item, expert_a, expert_b):
    token_client(expert_a).post(scores_url(panel_item), SCORE, format="json")
    # Expert B may read the item they sit on, but nothing in it carries A's scores.
    response = token_client(expert_b).get(
        f"/api/projects/{panel_item.project.slug}/items/{panel_item.pk}/"
    )
    assert response.status_code == 200
    assert "medical_correctness" not in response.content.decode()
    # The admin-only review trail stays closed to experts.
    trail = token_client(expert_b).get(
        f"/api/projects/{panel_item.project.slug}/items/{panel_item.pk}/reviews/"
    )
    assert trail.status_code == 403


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**SCORE, "scores": {"medical_correctness": 2}}, "scores"),
        ({**SCORE, "scores": {**ALL_TWO, "medical_correctness": 3}}, "scores"),
        ({**SCORE, "decision": "maybe"}, "decision"),
        ({**SCORE, "answer": "Z"}, "answer"),
        ({**SCORE, "first_wrong_step": 0}, "first_wrong_step"),
    ],
)
def test_it_rejects_malformed_scores(panel_item, expert_a, payload, field):
    response = token_client(expert_a).post(scores_url(panel_item), payload, format="json")
    assert field in assert_error(response, 400, "invalid")
    assert not RubricScore.objects.exists()


def test_it_passes_on_the_panel_rules_as_400(panel_item, expert_a):
    api = token_client(expert_a)
    revise = {**SCORE, "decision": "revise"}  # revise needs a comment
    assert assert_error(api.post(scores_url(panel_item), revise, format="json"), 400, "invalid")
    assert api.post(scores_url(panel_item), SCORE, format="json").status_code == 201
    again = api.post(scores_url(panel_item), SCORE, format="json")
    assert "already scored" in str(assert_error(again, 400, "invalid"))
    assert PanelDecision.objects.filter(item=panel_item).count() == 1


def test_it_refuses_scores_from_anyone_off_the_panel(
    panel_item, anon_api, outsider_api, reviewer_api, admin_api, expert_c, expert_a
):
    url = scores_url(panel_item)
    assert_error(anon_api.post(url, SCORE, format="json"), 401, "not_authenticated")
    assert_error(outsider_api.post(url, SCORE, format="json"), 403, "permission_denied")
    assert_error(reviewer_api.post(url, SCORE, format="json"), 403, "permission_denied")
    assert_error(admin_api.post(url, SCORE, format="json"), 403, "permission_denied")
    assert_error(token_client(expert_c).post(url, SCORE, format="json"), 403, "permission_denied")
    assert_error(token_client(expert_a).get(url), 405, "method_not_allowed")
    no_panel = ItemFactory(project=panel_item.project, status=Status.FIRST_REVIEW)
    assert_error(
        token_client(expert_a).post(scores_url(no_panel), SCORE, format="json"), 404, "not_found"
    )
    assert not RubricScore.objects.exists()


# --- Consensus -----------------------------------------------------------------------------

AGREE = {"answer": "A", "approve_phrasing": True}


def test_it_approves_an_item_once_enough_experts_agree(project, expert_a, expert_b):
    item = ItemFactory(project=project, status=Status.CONSENSUS)
    first = token_client(expert_a).post(consensus_url(item), AGREE, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["item_status"] == "consensus"
    second = token_client(expert_b).post(consensus_url(item), AGREE, format="json")
    assert second.json()["item_status"] == "approved"
    item.refresh_from_db()
    assert item.status == Status.APPROVED
    assert set(
        ConsensusVote.objects.filter(item=item).values_list("expert__username", flat=True)
    ) == {
        "expert_a",
        "expert_b",
    }


def test_it_rejects_bad_votes(project, expert_a):
    item = ItemFactory(project=project, status=Status.CONSENSUS)
    api = token_client(expert_a)
    assert "answer" in assert_error(
        api.post(consensus_url(item), {"answer": "Q", "approve_phrasing": True}, format="json"),
        400,
        "invalid",
    )
    assert "approve_phrasing" in assert_error(
        api.post(consensus_url(item), {"answer": "A"}, format="json"), 400, "invalid"
    )
    # Holding another answer correct needs a reason.
    assert_error(
        api.post(consensus_url(item), {"answer": "B", "approve_phrasing": True}, format="json"),
        400,
        "invalid",
    )
    assert api.post(consensus_url(item), AGREE, format="json").status_code == 201
    assert_error(api.post(consensus_url(item), AGREE, format="json"), 400, "invalid")
    assert ConsensusVote.objects.filter(item=item).count() == 1


def test_it_refuses_votes_from_non_experts_and_off_stage(
    project, anon_api, outsider_api, reviewer_api, admin_api, expert_a
):
    item = ItemFactory(project=project, status=Status.CONSENSUS)
    url = consensus_url(item)
    assert_error(anon_api.post(url, AGREE, format="json"), 401, "not_authenticated")
    assert_error(outsider_api.post(url, AGREE, format="json"), 403, "permission_denied")
    assert_error(reviewer_api.post(url, AGREE, format="json"), 403, "permission_denied")
    assert_error(admin_api.post(url, AGREE, format="json"), 403, "permission_denied")
    assert_error(token_client(expert_a).get(url), 405, "method_not_allowed")
    early = ItemFactory(project=project, status=Status.FIRST_REVIEW)
    assert_error(
        token_client(expert_a).post(consensus_url(early), AGREE, format="json"), 404, "not_found"
    )
    assert not ConsensusVote.objects.exists()


# --- Held items ----------------------------------------------------------------------------


def test_it_shows_reviewers_exactly_the_items_they_hold(reviewer_api, project, queued):
    items = f"/api/projects/{project.slug}/items/"
    assert reviewer_api.get(items).json()["results"] == []
    assert_error(reviewer_api.get(f"{items}{queued[0].pk}/"), 403, "permission_denied")
    reviewer_api.post(NEXT, {}, format="json")
    listed = [row["id"] for row in reviewer_api.get(items).json()["results"]]
    assert listed == [queued[0].pk, queued[1].pk]
    detail = reviewer_api.get(f"{items}{queued[0].pk}/")
    assert detail.status_code == 200 and detail.json()["id"] == queued[0].pk
    assert_error(reviewer_api.get(f"{items}{queued[2].pk}/"), 403, "permission_denied")


def test_it_shows_experts_the_panels_they_sit_on(panel_item, expert_a, expert_c):
    items = f"/api/projects/{panel_item.project.slug}/items/"
    seated = token_client(expert_a)
    assert [row["id"] for row in seated.get(items).json()["results"]] == [panel_item.pk]
    assert seated.get(f"{items}{panel_item.pk}/").status_code == 200
    other = token_client(expert_c)
    assert other.get(items).json()["results"] == []
    assert_error(other.get(f"{items}{panel_item.pk}/"), 403, "permission_denied")


# --- Release diff and run calls ------------------------------------------------------------


@pytest.fixture
def releases(settings, tmp_path, project, admin_user, reviewer, expert_a, expert_b):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    kept = reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])

    def build(version):
        release = release_create(project=project, version=version, actor=admin_user, dispatch=False)
        return release_build(release_id=release.pk)

    first = build("v1")
    added = reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])
    second = build("v2")
    return {"first": first, "second": second, "kept": kept, "added": added}


def test_it_diffs_two_releases_for_admins(admin_api, project, releases):
    url = f"/api/projects/{project.slug}/releases/v2/diff/"
    response = admin_api.get(url, {"against": "v1"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["base"], body["release"]) == ("v1", "v2")
    assert body["summary"]["added"] == 1 and body["summary"]["removed"] == 0
    assert [c["item_id"] for c in body["changes"] if c["change"] == "added"] == [
        releases["added"].pk
    ]
    back = admin_api.get(
        f"/api/projects/{project.slug}/releases/v1/diff/", {"against": "v2"}
    ).json()
    assert back["summary"]["removed"] == 1


def test_it_refuses_release_diffs_to_others_and_bad_queries(
    admin_api, reviewer_api, anon_api, project, releases, expert_a
):
    url = f"/api/projects/{project.slug}/releases/v2/diff/"
    assert_error(anon_api.get(url, {"against": "v1"}), 401, "not_authenticated")
    assert_error(reviewer_api.get(url, {"against": "v1"}), 403, "permission_denied")
    assert_error(token_client(expert_a).get(url, {"against": "v1"}), 403, "permission_denied")
    assert "against" in assert_error(admin_api.get(url), 400, "invalid")
    assert_error(admin_api.get(url, {"against": "v9"}), 404, "not_found")
    assert_error(admin_api.post(url, {"against": "v1"}), 405, "method_not_allowed")


def test_it_lists_a_runs_llm_calls_without_keys(
    monkeypatch, admin_api, reviewer_api, project, admin_user, item_for_run
):
    run = run_start(project=project, stage="cot", actor=admin_user)
    monkeypatch.setenv("MEDCOT_API2_TEST_KEY", "sk-live-do-not-leak")
    type(run.profile).objects.filter(pk=run.profile_id).update(api_key_env="MEDCOT_API2_TEST_KEY")
    for outcome in (LLMCall.Outcome.TRANSIENT, LLMCall.Outcome.OK):
        LLMCall.objects.create(
            profile=run.profile,
            run=run,
            item=item_for_run,
            task="cot",
            model="sim-1",
            outcome=outcome,
            http_status=200 if outcome == LLMCall.Outcome.OK else 429,
            reply="A because …",
        )
    LLMCall.objects.create(profile=run.profile, task="cot", model="sim-1", outcome="ok")
    url = f"/api/projects/{project.slug}/runs/{run.pk}/calls/"
    response = admin_api.get(url)
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [row["outcome"] for row in rows] == ["transient", "ok"]
    assert rows[0]["http_status"] == 429 and rows[1]["profile"] == run.profile.name
    text = response.content.decode()
    assert "sk-live-do-not-leak" not in text and "MEDCOT_API2_TEST_KEY" not in text
    assert_error(reviewer_api.get(url), 403, "permission_denied")
    assert_error(admin_api.post(url, {}), 405, "method_not_allowed")
    assert_error(
        admin_api.get(f"/api/projects/{project.slug}/runs/999999/calls/"), 404, "not_found"
    )


@pytest.fixture
def item_for_run(project):
    return ItemFactory(project=project, status=Status.IMPORTED)
