"""The confirmations a first-pass pass or a consensus vote needs hold in the API as in the
browser: a CoT that concludes off the key, and a pass quicker than the project's minimum."""

import pytest

from medcot.lifecycle import Status
from medcot.models import AuthorKind
from medcot.services import item_version_create
from review.models import ConsensusVote, FirstPassReview
from tests.api.conftest import assert_error, token_client
from tests.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db

NEXT = "/api/review/first-pass/next/"


def concluding_on(item, letter):
    item_version_create(
        item=item,
        author_kind=AuthorKind.LLM,
        reason="chain of thought generated",
        cot=f"Step 1.\nStep 2.\nThe answer is ({letter}).",
    )
    item.refresh_from_db()
    return item


@pytest.fixture
def immediate(settings):
    settings.REVIEW_UNDO_SECONDS = 0


PASS = {"relevance": True, "correctness": True, "sufficiency": True, "action": "pass"}


def test_it_refuses_to_pass_a_flagged_item_without_the_confirmation(reviewer_api, immediate):
    project = ProjectFactory(min_pass_seconds=0)
    item = concluding_on(ItemFactory(project=project, status=Status.FIRST_REVIEW), "C")
    url = f"/api/review/items/{item.pk}/first-pass/"
    details = assert_error(reviewer_api.post(url, PASS, format="json"), 400, "invalid")
    assert details["confirm"] == ["confirm_mismatch"]
    assert "concludes on C, not on the key A" in details["non_field_errors"][0]
    assert not FirstPassReview.objects.exists()
    response = reviewer_api.post(url, {**PASS, "confirm_mismatch": True}, format="json")
    assert response.status_code == 201, response.content
    review = FirstPassReview.objects.get(item=item)
    assert review.confirmations == ["mismatch"] and review.cot_concluded == "C"


def test_it_measures_a_pass_from_the_claim_when_the_client_does_not_say(reviewer, immediate):
    project = ProjectFactory(min_pass_seconds=5)
    item = concluding_on(ItemFactory(project=project, status=Status.FIRST_REVIEW), "A")
    api = token_client(reviewer)
    assert api.post(NEXT, {}, format="json").json()["item"]["id"] == item.pk
    url = f"/api/review/items/{item.pk}/first-pass/"
    details = assert_error(api.post(url, PASS, format="json"), 400, "invalid")
    assert details["confirm"] == ["confirm_fast"]
    # A client that reports its own time on the item is believed.
    response = api.post(url, {**PASS, "seconds_on_item": 12}, format="json")
    assert response.status_code == 201, response.content
    review = FirstPassReview.objects.get(item=item)
    assert review.confirmations == [] and review.seconds_on_item == 12


def test_a_quick_pass_goes_through_with_its_confirmation_recorded(reviewer_api, immediate):
    project = ProjectFactory(min_pass_seconds=5)
    item = concluding_on(ItemFactory(project=project, status=Status.FIRST_REVIEW), "A")
    url = f"/api/review/items/{item.pk}/first-pass/"
    payload = {**PASS, "seconds_on_item": 1, "confirm_fast": True}
    assert reviewer_api.post(url, payload, format="json").status_code == 201
    assert FirstPassReview.objects.get(item=item).confirmations == ["fast"]


def test_a_fix_or_discard_needs_no_confirmation(reviewer_api, immediate):
    project = ProjectFactory(min_pass_seconds=60)
    item = concluding_on(ItemFactory(project=project, status=Status.FIRST_REVIEW), "C")
    url = f"/api/review/items/{item.pk}/first-pass/"
    payload = {**PASS, "relevance": False, "action": "discard", "reason": "Off topic"}
    assert reviewer_api.post(url, payload, format="json").status_code == 201


def test_a_consensus_vote_for_a_flagged_key_needs_the_confirmation(expert_a):
    project = ProjectFactory()
    item = concluding_on(ItemFactory(project=project, status=Status.CONSENSUS), "B")
    api = token_client(expert_a)
    url = f"/api/review/items/{item.pk}/consensus/"
    vote = {"answer": "A", "approve_phrasing": True}
    details = assert_error(api.post(url, vote, format="json"), 400, "invalid")
    assert details["confirm"] == ["confirm_mismatch"]
    response = api.post(url, {**vote, "confirm_mismatch": True}, format="json")
    assert response.status_code == 201, response.content
    assert ConsensusVote.objects.get(item=item).confirmations == ["mismatch"]


def test_a_vote_for_the_option_the_cot_concludes_on_needs_no_confirmation(expert_a):
    project = ProjectFactory()
    item = concluding_on(ItemFactory(project=project, status=Status.CONSENSUS), "B")
    api = token_client(expert_a)
    vote = {"answer": "B", "approve_phrasing": True, "comment": "The CoT is right; B"}
    response = api.post(f"/api/review/items/{item.pk}/consensus/", vote, format="json")
    assert response.status_code == 201, response.content
