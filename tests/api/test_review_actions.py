"""The review actions the browser had and the API lacked: undo and skip at first pass, a panel
expert's revision or guided regeneration, and an admin's adjudication. Each through the API with
a token: its effect read back from the database, its refusals checked for status and error body,
and its footprint compared with the same action taken through the browser's page."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from generation.models import Job
from medcot.lifecycle import Status, transition
from medcot.models import AuthorKind, Event, ItemVersion
from medcot.roles import EXPERT
from medcot.services import item_version_create
from review.models import (
    Adjudication,
    FirstPassReview,
    FirstPassState,
    Lease,
    Panel,
    PanelState,
    RubricDimension,
    Stage,
)
from review.services import person_create
from review.services.first_pass import first_pass_submit
from review.services.panels import panel_assign, panel_submit
from review.services.queue import queue_next
from tests.api.conftest import assert_error, token_client
from tests.api.test_review_writes import NEXT, PASS, first_pass_url, scores_url
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

UNDO = "/api/review/first-pass/undo/"
ALL_TWO = dict.fromkeys(RubricDimension.values, 2)


def skip_url(item) -> str:
    return f"/api/review/items/{item.pk}/first-pass/skip/"


def revision_url(item) -> str:
    return f"/api/review/items/{item.pk}/revision/"


def regeneration_url(item) -> str:
    return f"/api/review/items/{item.pk}/regeneration/"


def adjudication_url(item) -> str:
    return f"/api/projects/{item.project.slug}/items/{item.pk}/adjudication/"


@pytest.fixture
def held_window(settings):
    settings.REVIEW_UNDO_SECONDS = 60


def _score(item, expert, decision, comment="", answer="A"):
    panel_submit(
        item=item,
        expert=expert,
        scores=dict.fromkeys(RubricDimension.values, 1),
        decision=decision,
        answer=answer,
        comment=comment,
    )


@pytest.fixture
def revising(project, admin_user, expert_a, expert_b):
    """An item whose two-expert panel asked for a revision in round 1."""
    item = ItemFactory(project=project, status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    _score(item, expert_a, "revise", "Step 2 is vague")
    _score(item, expert_b, "revise", "Explain the ECG finding")
    item.refresh_from_db()
    assert Panel.objects.get(item=item).state == PanelState.REVISING
    return item


@pytest.fixture
def deadlocked(project, admin_user, expert_a, expert_b):
    """A panel split 1–1 with no further expert to bring in: it waits for an admin."""
    item = ItemFactory(project=project, status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    _score(item, expert_a, "accept")
    _score(item, expert_b, "discard", "The vignette is unsafe")
    item.refresh_from_db()
    assert Panel.objects.get(item=item).state == PanelState.ADJUDICATION
    return item


def late_expert(username="expert_late"):
    return person_create(
        username=username,
        password="correct horse battery staple",
        roles=[EXPERT],
        specialties=["Cardiology"],
    )


# --- Undo ----------------------------------------------------------------------------------


def test_it_undoes_a_held_verdict_and_gives_the_item_back(
    reviewer_api, reviewer, queued, held_window
):
    item = queued[0]
    reviewer_api.post(NEXT, {}, format="json")
    submitted = reviewer_api.post(first_pass_url(item), PASS, format="json").json()
    assert submitted["state"] == "held"
    # With the verdict held, the next call shows the following item, not the judged one.
    assert reviewer_api.post(NEXT, {}, format="json").json()["item"]["id"] == queued[1].pk

    pending = reviewer_api.get(UNDO)
    assert pending.status_code == 200
    assert pending.json()["undoable"]["id"] == submitted["id"]

    response = reviewer_api.post(UNDO)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["id"], body["item"], body["state"], body["item_status"]) == (
        submitted["id"],
        item.pk,
        "undone",
        "first_review",
    )
    assert FirstPassReview.objects.get(pk=submitted["id"]).state == FirstPassState.UNDONE
    event = Event.objects.get(item=item, kind="first_pass_undone")
    assert event.actor == reviewer and event.data == {"first_pass_review": submitted["id"]}
    assert Lease.objects.get(item=item, stage=Stage.FIRST_REVIEW).holder == reviewer
    # The item is the reviewer's again, first in line, and may be judged afresh.
    assert reviewer_api.post(NEXT, {}, format="json").json()["item"]["id"] == item.pk
    assert reviewer_api.get(UNDO).json() == {"undoable": None}
    again = reviewer_api.post(first_pass_url(item), PASS, format="json")
    assert again.status_code == 201 and again.json()["id"] != submitted["id"]


def test_it_says_when_there_is_nothing_to_undo(reviewer_api, reviewer, queued, held_window):
    details = assert_error(reviewer_api.post(UNDO), 400, "invalid")
    assert "nothing left to undo" in details["non_field_errors"][0]
    assert reviewer_api.get(UNDO).json() == {"undoable": None}
    assert not Event.objects.filter(kind="first_pass_undone").exists()


def test_it_refuses_an_undo_once_the_window_has_passed(reviewer_api, queued, held_window):
    item = queued[0]
    review_id = reviewer_api.post(first_pass_url(item), PASS, format="json").json()["id"]
    # The window passes: the verdict is due, though nothing has applied it yet.
    FirstPassReview.objects.filter(pk=review_id).update(
        effective_at=timezone.now() - timedelta(seconds=1)
    )
    assert reviewer_api.get(UNDO).json() == {"undoable": None}
    details = assert_error(reviewer_api.post(UNDO), 400, "invalid")
    assert "taken effect" in details["non_field_errors"][0]
    assert FirstPassReview.objects.get(pk=review_id).state == FirstPassState.HELD
    # The next visit to the queue applies it, as the browser's would.
    reviewer_api.post(NEXT, {}, format="json")
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert FirstPassReview.objects.get(pk=review_id).state == FirstPassState.APPLIED


def test_it_undoes_only_the_callers_own_verdict(
    reviewer_api, expert_api, expert_a, queued, held_window
):
    theirs = first_pass_submit(
        item=queued[0],
        reviewer=expert_a,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
    )
    assert_error(reviewer_api.post(UNDO), 400, "invalid")
    assert FirstPassReview.objects.get(pk=theirs.pk).state == FirstPassState.HELD
    assert expert_api.post(UNDO).json()["id"] == theirs.pk


def test_it_refuses_undo_to_the_wrong_people_and_methods(
    anon_api, outsider_api, admin_api, reviewer_api
):
    for method in ("get", "post"):
        assert_error(getattr(anon_api, method)(UNDO), 401, "not_authenticated")
        assert_error(getattr(outsider_api, method)(UNDO), 403, "permission_denied")
        assert_error(getattr(admin_api, method)(UNDO), 403, "permission_denied")
    assert_error(reviewer_api.put(UNDO, {}), 405, "method_not_allowed")
    assert_error(reviewer_api.delete(UNDO), 405, "method_not_allowed")


# --- Skip ----------------------------------------------------------------------------------


def test_it_skips_an_item_and_next_hands_out_another(
    reviewer_api, expert_api, reviewer, expert_a, queued
):
    claimed = reviewer_api.post(NEXT, {}, format="json").json()
    assert (claimed["item"]["id"], claimed["following"]["id"]) == (queued[0].pk, queued[1].pk)
    events_before = Event.objects.count()

    response = reviewer_api.post(skip_url(queued[0]))
    assert response.status_code == 204 and response.content == b""
    assert not Lease.objects.filter(item=queued[0]).exists()
    assert Event.objects.count() == events_before
    assert not FirstPassReview.objects.exists()
    queued[0].refresh_from_db()
    assert queued[0].status == Status.FIRST_REVIEW

    # With the skipped id excluded, the reviewer gets the next two items.
    after = reviewer_api.post(NEXT, {"exclude": [queued[0].pk]}, format="json").json()
    assert (after["item"]["id"], after["following"]["id"]) == (queued[1].pk, queued[2].pk)
    # The skipped item is back in the queue for everyone else.
    assert expert_api.post(NEXT, {}, format="json").json()["item"]["id"] == queued[0].pk
    assert Lease.objects.get(item=queued[0]).holder == expert_a


def test_it_offers_nothing_when_only_excluded_items_are_left(reviewer_api, queued):
    reviewer_api.post(NEXT, {}, format="json")
    for item in queued[:2]:
        assert reviewer_api.post(skip_url(item)).status_code == 204
    ids = [item.pk for item in queued]
    assert reviewer_api.post(NEXT, {"exclude": ids}, format="json").json() == {
        "item": None,
        "following": None,
    }
    # Asked without them, the reviewer is offered the skipped items again.
    again = reviewer_api.post(NEXT, {}, format="json").json()
    assert {again["item"]["id"], again["following"]["id"]} <= set(ids)


def test_it_refuses_to_skip_an_item_the_caller_does_not_hold(
    anon_api, outsider_api, admin_api, reviewer_api, expert_api, expert_a, queued
):
    item = queued[0]
    # Nobody holds it yet.
    assert_error(reviewer_api.post(skip_url(item)), 403, "permission_denied")
    expert_api.post(NEXT, {}, format="json")
    assert Lease.objects.get(item=item).holder == expert_a
    # Someone else holds it.
    assert_error(reviewer_api.post(skip_url(item)), 403, "permission_denied")
    assert_error(anon_api.post(skip_url(item)), 401, "not_authenticated")
    assert_error(outsider_api.post(skip_url(item)), 403, "permission_denied")
    assert_error(admin_api.post(skip_url(item)), 403, "permission_denied")
    assert_error(expert_api.get(skip_url(item)), 405, "method_not_allowed")
    assert_error(expert_api.post("/api/review/items/999999/first-pass/skip/"), 404, "not_found")
    assert Lease.objects.get(item=item).holder == expert_a


def test_it_refuses_to_skip_an_item_past_first_pass(reviewer_api, queued, settings):
    settings.REVIEW_UNDO_SECONDS = 0
    item = queued[0]
    reviewer_api.post(NEXT, {}, format="json")
    assert reviewer_api.post(first_pass_url(item), PASS, format="json").status_code == 201
    # The caller's own verdict is the answer, as on the browser's page (it used to be a 404
    # here and a quiet redirect there): one service, one refusal.
    details = assert_error(reviewer_api.post(skip_url(item)), 400, "invalid")
    assert "taken effect" in details["non_field_errors"][0]


def test_it_refuses_to_skip_an_item_with_a_held_verdict(
    reviewer_api, reviewer, queued, held_window
):
    item = queued[0]
    reviewer_api.post(NEXT, {}, format="json")
    reviewer_api.post(first_pass_url(item), PASS, format="json")
    details = assert_error(reviewer_api.post(skip_url(item)), 400, "invalid")
    assert "undo" in details["non_field_errors"][0]
    assert Lease.objects.get(item=item).holder == reviewer


@pytest.mark.parametrize(
    "exclude",
    [[0], [-3], [2**63], ["x"], "12", list(range(1, 202))],
    ids=["zero", "negative", "past-bigint", "not-a-number", "not-a-list", "too-many"],
)
def test_it_rejects_a_bad_exclude_list(reviewer_api, queued, exclude):
    details = assert_error(
        reviewer_api.post(NEXT, {"exclude": exclude}, format="json"), 400, "invalid"
    )
    assert "exclude" in details
    assert not Lease.objects.exists()


# --- Panel revision ------------------------------------------------------------------------

REVISION = {
    "cot": "1. ST elevation on the ECG.\n2. Aspirin at once.",
    "answer": "A",
    "reason": "Step 2 now names the ECG finding.",
}


def test_it_revises_an_item_and_starts_the_next_round(revising, expert_a):
    response = token_client(expert_a).post(revision_url(revising), REVISION, format="json")
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "item": revising.pk,
        "item_status": "panel_review",
        "version": 2,
        "panel_state": "scoring",
        "round": 2,
    }
    revising.refresh_from_db()
    version = revising.current_version
    assert (version.number, version.author, version.author_kind) == (2, expert_a, AuthorKind.HUMAN)
    assert (version.cot, version.answer, version.reason) == (
        REVISION["cot"],
        "A",
        REVISION["reason"],
    )
    assert version.stem == ItemVersion.objects.get(item=revising, number=1).stem
    assert revising.revision_status == "modified"
    panel = Panel.objects.get(item=revising)
    assert (panel.round, panel.round_version_id) == (2, version.pk)
    started = Event.objects.filter(item=revising, kind="panel_round_started").get()
    assert (started.actor, started.reason) == (expert_a, REVISION["reason"])


def test_it_revises_the_stem_and_options_too(revising, expert_b):
    options = {"A": "Aspirin and a 12-lead ECG", "B": "Discharge", "C": "CT abdomen", "D": "PPI"}
    payload = {**REVISION, "stem": "A 54-year-old man has chest pain. First step?"}
    payload["options"] = options
    response = token_client(expert_b).post(revision_url(revising), payload, format="json")
    assert response.status_code == 201, response.json()
    revising.refresh_from_db()
    assert revising.current_version.stem == payload["stem"]
    assert revising.current_version.options == options


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
        ({"cot": ""}, "cot"),
        ({"answer": "Z"}, "answer"),
        ({"stem": "   "}, "stem"),
        ({"options": {"A": "a", "B": "b", "C": "c"}}, "options"),
        ({"options": {"A": "a", "B": "b", "C": "c", "D": "d", "F": "f"}}, "options"),
        ({"options": {"A": "a", "B": "", "C": "c", "D": "d"}}, "options"),
        ({"cot": "x" * 50001}, "cot"),
    ],
)
def test_it_rejects_a_malformed_revision(revising, expert_a, change, field):
    response = token_client(expert_a).post(
        revision_url(revising), {**REVISION, **change}, format="json"
    )
    assert field in assert_error(response, 400, "invalid")
    assert ItemVersion.objects.filter(item=revising).count() == 1


def test_it_refuses_a_revision_that_changes_nothing(revising, expert_a):
    # The factory's CoT is empty, which the API refuses outright; give the item one first.
    item_version_create(item=revising, author_kind=AuthorKind.LLM, reason="draft", cot="Same")
    unchanged = {**REVISION, "cot": "Same", "answer": "A"}
    response = token_client(expert_a).post(revision_url(revising), unchanged, format="json")
    assert "changes nothing" in assert_error(response, 400, "invalid")["non_field_errors"][0]
    assert Panel.objects.get(item=revising).round == 1


def test_it_refuses_a_key_that_names_no_option(revising, expert_a):
    response = token_client(expert_a).post(
        revision_url(revising), {**REVISION, "answer": "E"}, format="json"
    )
    words = "key must name one of the options"
    assert words in assert_error(response, 400, "invalid")["non_field_errors"][0]
    assert ItemVersion.objects.filter(item=revising).count() == 1


def test_it_refuses_a_revision_the_panel_did_not_ask_for(project, admin_user, expert_a, expert_b):
    item = ItemFactory(project=project, status=Status.PANEL)
    panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    details = assert_error(
        token_client(expert_a).post(revision_url(item), REVISION, format="json"), 400, "invalid"
    )
    assert "has not asked for a revision" in details["non_field_errors"][0]
    assert ItemVersion.objects.filter(item=item).count() == 1


# --- Guided regeneration -------------------------------------------------------------------

GUIDANCE = {"guidance": "Explain why the ECG comes before the troponin."}


def test_it_requests_a_regeneration_and_the_round_starts_when_it_arrives(
    revising, expert_a, expert_b
):
    response = token_client(expert_b).post(regeneration_url(revising), GUIDANCE, format="json")
    assert response.status_code == 202, response.json()
    assert response.json() == {
        "item": revising.pk,
        "item_status": "panel_review",
        "version": 1,
        "panel_state": "regenerating",
        "round": 1,
    }
    job = Job.objects.get(item=revising, kind=Job.Kind.REGENERATE)
    assert job.payload == {"guidance": GUIDANCE["guidance"], "actor_id": expert_b.pk}
    asked = Event.objects.get(item=revising, kind="panel_regeneration_requested")
    assert (asked.actor, asked.reason) == (expert_b, GUIDANCE["guidance"])
    # Nobody scores while the model works.
    early = token_client(expert_a).post(
        scores_url(revising),
        {"scores": ALL_TWO, "decision": "accept", "answer": "A"},
        format="json",
    )
    assert "not scoring" in assert_error(early, 400, "invalid")["non_field_errors"][0]

    # The worker appends the guided version; the next panel call starts round 2 on it.
    item_version_create(
        item=revising,
        author_kind=AuthorKind.LLM_GUIDED,
        reason="guided",
        cot="A rewritten CoT",
        marks_modified=True,
    )
    scored = token_client(expert_a).post(
        scores_url(revising),
        {"scores": ALL_TWO, "decision": "accept", "answer": "A"},
        format="json",
    )
    assert scored.status_code == 201, scored.json()
    panel = Panel.objects.get(item=revising)
    assert (panel.round, panel.state) == (2, PanelState.SCORING)
    assert [r["number"] for r in scored.json()["rounds"]] == [2, 1]


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "guidance"), ({"guidance": "  "}, "guidance"), ({"guidance": "x" * 4001}, "guidance")],
)
def test_it_rejects_a_regeneration_without_guidance(revising, expert_a, payload, field):
    response = token_client(expert_a).post(regeneration_url(revising), payload, format="json")
    assert field in assert_error(response, 400, "invalid")
    assert Panel.objects.get(item=revising).state == PanelState.REVISING
    assert not Job.objects.filter(item=revising).exists()


def test_it_refuses_a_second_regeneration_request(revising, expert_a, expert_b):
    first = token_client(expert_b).post(regeneration_url(revising), GUIDANCE, format="json")
    assert first.status_code == 202
    # Asked once: the panel now waits for the model, not for a revision.
    twice = token_client(expert_a).post(regeneration_url(revising), GUIDANCE, format="json")
    words = "has not asked for a revision"
    assert words in assert_error(twice, 400, "invalid")["non_field_errors"][0]
    assert Job.objects.filter(item=revising).count() == 1


@pytest.mark.parametrize(
    ("url_of", "payload"),
    [(revision_url, REVISION), (regeneration_url, GUIDANCE)],
    ids=["revision", "regeneration"],
)
def test_it_refuses_panel_edits_from_anyone_off_the_panel(
    revising, anon_api, outsider_api, reviewer_api, admin_api, expert_a, expert_c, url_of, payload
):
    url = url_of(revising)
    assert_error(anon_api.post(url, payload, format="json"), 401, "not_authenticated")
    for refused in (outsider_api, reviewer_api, admin_api, token_client(expert_c)):
        assert_error(refused.post(url, payload, format="json"), 403, "permission_denied")
    assert_error(token_client(expert_a).get(url), 405, "method_not_allowed")
    no_panel = ItemFactory(project=revising.project, status=Status.FIRST_REVIEW)
    response = token_client(expert_a).post(url_of(no_panel), payload, format="json")
    assert_error(response, 404, "not_found")
    assert ItemVersion.objects.filter(item=revising).count() == 1
    assert not Job.objects.filter(item=revising).exists()
    assert Panel.objects.get(item=revising).state == PanelState.REVISING


# --- Adjudication --------------------------------------------------------------------------


def test_it_discards_a_deadlocked_item(admin_api, admin_user, deadlocked):
    payload = {"outcome": "discard", "reason": "The panel split on safety."}
    response = admin_api.post(adjudication_url(deadlocked), payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["outcome"], body["item_status"], body["panel_state"], body["expert"]) == (
        "discard",
        "discarded",
        "closed",
        None,
    )
    deadlocked.refresh_from_db()
    assert (deadlocked.status, deadlocked.status_reason) == (Status.DISCARDED, payload["reason"])
    record = Adjudication.objects.get(item=deadlocked)
    assert (record.pk, record.admin, record.reason) == (body["id"], admin_user, payload["reason"])
    assert Event.objects.filter(item=deadlocked, kind="adjudicated", actor=admin_user).exists()


def test_it_sends_a_deadlock_back_for_a_new_round(admin_api, deadlocked):
    payload = {"outcome": "new_round", "reason": "Read the new guideline and score again."}
    body = admin_api.post(adjudication_url(deadlocked), payload, format="json").json()
    assert (body["item_status"], body["panel_state"], body["panel_round"]) == (
        "panel_review",
        "scoring",
        2,
    )


def test_it_adds_an_expert_to_a_deadlocked_panel(admin_api, deadlocked):
    late_expert()
    payload = {"outcome": "add_expert", "reason": "A third opinion.", "expert": "expert_late"}
    response = admin_api.post(adjudication_url(deadlocked), payload, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["expert"], response.json()["panel_state"]) == ("expert_late", "scoring")
    panel = Panel.objects.get(item=deadlocked)
    assert panel.memberships.filter(expert__username="expert_late", why="adjudication").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "outcome"),
        ({"outcome": "approve", "reason": "x"}, "outcome"),
        ({"outcome": "discard"}, "reason"),
        ({"outcome": "discard", "reason": "   "}, "reason"),
        ({"outcome": "discard", "reason": "x" * 4001}, "reason"),
        ({"outcome": "add_expert", "reason": "x", "expert": "nobody"}, "expert"),
        ({"outcome": "add_expert", "reason": "x", "expert": "y" * 151}, "expert"),
    ],
)
def test_it_rejects_a_malformed_decision(admin_api, deadlocked, payload, field):
    response = admin_api.post(adjudication_url(deadlocked), payload, format="json")
    assert field in assert_error(response, 400, "invalid")
    assert not Adjudication.objects.exists()


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"outcome": "accept", "reason": "A is right"}, "Fewer than 2 experts"),
        ({"outcome": "add_expert", "reason": "More"}, "Choose an expert"),
        ({"outcome": "add_expert", "reason": "More", "expert": "expert_a"}, "cannot join"),
        ({"outcome": "add_expert", "reason": "More", "expert": "reviewer"}, "Choose an expert"),
    ],
)
def test_it_passes_on_the_adjudication_rules_as_400(
    admin_api, deadlocked, reviewer, payload, words
):
    details = assert_error(
        admin_api.post(adjudication_url(deadlocked), payload, format="json"), 400, "invalid"
    )
    assert words in details["non_field_errors"][0]
    assert not Adjudication.objects.exists()
    assert Panel.objects.get(item=deadlocked).state == PanelState.ADJUDICATION


def test_it_only_discards_at_consensus_and_nowhere_else(admin_api, project):
    at_consensus = ItemFactory(project=project, status=Status.CONSENSUS)
    accept = {"outcome": "accept", "reason": "fine"}
    refused = admin_api.post(adjudication_url(at_consensus), accept, format="json")
    assert "only discard" in assert_error(refused, 400, "invalid")["non_field_errors"][0]
    discard = {"outcome": "discard", "reason": "Ambiguous stem"}
    body = admin_api.post(adjudication_url(at_consensus), discard, format="json").json()
    assert (body["item_status"], body["panel_state"], body["panel_round"]) == (
        "discarded",
        None,
        None,
    )
    early = ItemFactory(project=project, status=Status.FIRST_REVIEW)
    refused = admin_api.post(adjudication_url(early), discard, format="json")
    assert (
        "Only items under panel review"
        in assert_error(refused, 400, "invalid")["non_field_errors"][0]
    )


def test_it_refuses_adjudication_to_everyone_but_admins(
    deadlocked, anon_api, outsider_api, reviewer_api, admin_api, expert_a
):
    url = adjudication_url(deadlocked)
    payload = {"outcome": "discard", "reason": "x"}
    assert_error(anon_api.post(url, payload, format="json"), 401, "not_authenticated")
    assert_error(outsider_api.post(url, payload, format="json"), 403, "permission_denied")
    assert_error(reviewer_api.post(url, payload, format="json"), 403, "permission_denied")
    # Sitting on the panel does not make an expert its judge.
    assert_error(token_client(expert_a).post(url, payload, format="json"), 403, "permission_denied")
    assert_error(admin_api.get(url), 405, "method_not_allowed")
    other = ItemFactory(status=Status.CONSENSUS)  # another project's item
    assert_error(
        admin_api.post(
            f"/api/projects/{deadlocked.project.slug}/items/{other.pk}/adjudication/",
            payload,
            format="json",
        ),
        404,
        "not_found",
    )
    assert_error(
        admin_api.post(
            f"/api/projects/{deadlocked.project.slug}/items/999999/adjudication/",
            payload,
            format="json",
        ),
        404,
        "not_found",
    )
    assert not Adjudication.objects.exists()


# --- The same effect as the browser --------------------------------------------------------


def footprint(item) -> dict:
    """What an action leaves on an item, without ids or times (they differ between runs)."""
    item.refresh_from_db()
    panel = Panel.objects.filter(item=item).first()
    return {
        "status": (item.status, item.status_reason, item.revision_status),
        "versions": list(
            ItemVersion.objects.filter(item=item)
            .order_by("number")
            .values_list("number", "author_kind", "author__username", "reason", "cot", "answer")
        ),
        "events": list(
            Event.objects.filter(item=item)
            .order_by("created_at", "id")
            .values_list("kind", "from_status", "to_status", "actor__username", "reason")
        ),
        "panel": None
        if panel is None
        else (
            panel.state,
            panel.round,
            sorted(panel.memberships.values_list("expert__username", "why")),
        ),
        "first_pass": list(
            FirstPassReview.objects.filter(item=item)
            .order_by("id")
            .values_list("reviewer__username", "outcome", "state")
        ),
        "leases": sorted(Lease.objects.filter(item=item).values_list("holder__username", "stage")),
        "adjudications": list(
            Adjudication.objects.filter(item=item).values_list(
                "admin__username", "outcome", "reason"
            )
        ),
        "jobs": list(Job.objects.filter(item=item).order_by("id").values_list("kind", "payload")),
    }


def same_effect(item, browser, api) -> tuple[dict, dict]:
    """Run the browser's action and the API's on the same starting state, each rolled back
    afterwards, and return the two footprints."""
    results = []
    for act in (browser, api):
        savepoint = transaction.savepoint()
        response = act()
        assert response.status_code < 400, response.content
        results.append(footprint(item))
        transaction.savepoint_rollback(savepoint)
    return results[0], results[1]


def test_undo_has_the_browsers_effect(client, reviewer, project, held_window):
    item, _other = (ItemFactory(project=project, status=Status.FIRST_REVIEW) for _ in range(2))
    queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    first_pass_submit(
        item=item,
        reviewer=reviewer,
        relevance=True,
        correctness=True,
        sufficiency=True,
        action="pass",
    )
    client.force_login(reviewer)
    browser, api = same_effect(
        item,
        lambda: client.post(reverse("review:first_pass_undo")),
        lambda: token_client(reviewer).post(UNDO),
    )
    assert browser == api
    assert api["first_pass"] == [("reviewer", "pass", "undone")]
    assert api["leases"] == [("reviewer", Stage.FIRST_REVIEW)]
    assert api["events"][-1][0] == "first_pass_undone"


def test_skip_has_the_browsers_effect(client, reviewer, project):
    item, _other, _third = (
        ItemFactory(project=project, status=Status.FIRST_REVIEW) for _ in range(3)
    )
    queue_next(user=reviewer, stage=Stage.FIRST_REVIEW)
    client.force_login(reviewer)
    browser, api = same_effect(
        item,
        lambda: client.post(reverse("review:first_pass_skip", args=[item.pk])),
        lambda: token_client(reviewer).post(skip_url(item)),
    )
    assert browser == api
    assert api["leases"] == [] and api["status"][0] == Status.FIRST_REVIEW


def test_revision_has_the_browsers_effect(client, revising, expert_a):
    client.force_login(expert_a)
    browser, api = same_effect(
        revising,
        lambda: client.post(reverse("review:panel_revise", args=[revising.pk]), REVISION),
        lambda: token_client(expert_a).post(revision_url(revising), REVISION, format="json"),
    )
    assert browser == api
    assert api["panel"][:2] == (PanelState.SCORING, 2)
    assert api["versions"][-1][:3] == (2, AuthorKind.HUMAN, "expert_a")


def test_regeneration_has_the_browsers_effect(client, revising, expert_b):
    client.force_login(expert_b)
    browser, api = same_effect(
        revising,
        lambda: client.post(reverse("review:panel_regenerate", args=[revising.pk]), GUIDANCE),
        lambda: token_client(expert_b).post(regeneration_url(revising), GUIDANCE, format="json"),
    )
    assert browser == api
    assert api["panel"][0] == PanelState.REGENERATING
    assert api["jobs"] == [("regenerate", {**GUIDANCE, "actor_id": expert_b.pk})]


@pytest.mark.parametrize("outcome", ["discard", "new_round", "add_expert"])
def test_adjudication_has_the_browsers_effect(client, admin_user, deadlocked, outcome):
    added = late_expert()
    form = {"outcome": outcome, "reason": "Settled by the lead."}
    client.force_login(admin_user)
    browser, api = same_effect(
        deadlocked,
        lambda: client.post(
            reverse("review:adjudicate", args=[deadlocked.pk]),
            {**form, "expert": added.pk} if outcome == "add_expert" else form,
        ),
        lambda: token_client(admin_user).post(
            adjudication_url(deadlocked),
            {**form, "expert": added.get_username()} if outcome == "add_expert" else form,
            format="json",
        ),
    )
    assert browser == api
    assert api["adjudications"] == [("admin", outcome, form["reason"])]
    assert api["events"][-1][0] == "adjudicated"


def test_a_panel_item_moved_on_by_another_path_is_not_revised(revising, expert_a):
    # An admin discards the item while the panel waits for a revision: the expert's revision
    # is refused by the service, not written over a closed item.
    transition(revising, Status.DISCARDED, reason="withdrawn")
    response = token_client(expert_a).post(revision_url(revising), REVISION, format="json")
    assert "not under panel review" in assert_error(response, 400, "invalid")["non_field_errors"][0]
    assert ItemVersion.objects.filter(item=revising).count() == 1
