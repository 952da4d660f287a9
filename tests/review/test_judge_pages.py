"""The calibration page and API, the judge settings, and the judge's uses (queue order by
risk, the second-reviewer flag), each off by default and in force only where trusted."""

import pytest
from django.urls import reverse

from generation.models import JUDGE_DIMENSIONS
from medcot.lifecycle import Status
from review.judge import services
from review.models import JudgeSettings, RubricScore
from review.services.queue import queue_claim
from tests.api.conftest import token_client
from tests.review.test_judge_anchoring import judge_scores

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_routing():
    services.routing_cache_clear()
    yield
    services.routing_cache_clear()


def calibrated(make_item, expert_a, expert_b, n=6):
    """n panel-scored items on which the judge and both experts agree exactly, scores 0-2."""
    items = []
    for i in range(n):
        item = make_item(status=Status.CONSENSUS)
        score = i % 3
        judge_scores(item, **dict.fromkeys(JUDGE_DIMENSIONS, score))
        for expert in (expert_a, expert_b):
            for d in JUDGE_DIMENSIONS:
                RubricScore.objects.create(
                    item=item,
                    version=item.current_version,
                    expert=expert,
                    round=1,
                    dimension=d,
                    score=score,
                )
        items.append(item)
    return items


def test_the_calibration_page_shows_each_dimension_with_its_figures(
    client, admin_user, expert_a, expert_b, make_item, project
):
    calibrated(make_item, expert_a, expert_b)
    client.force_login(admin_user)
    body = client.get(reverse("review:judge:calibration", args=[project.slug])).content.decode()
    assert 'id="judge-calibration"' in body
    assert body.count('data-dimension="') == 5
    assert "[2 0 0] [0 2 0] [0 0 2]" in body  # the confusion matrix of 6 perfectly agreeing items
    assert ">1.00<" in body and "trusted" in body
    payload = token_client(admin_user).get(reverse("api-judge-calibration", args=[project.slug]))
    assert payload.status_code == 200
    row = payload.json()["dimensions"][0]
    assert row["n_items"] == 6 and row["weighted_kappa"]["value"] == pytest.approx(1.0)
    assert row["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]] and row["trusted"] is False
    # Not trusted yet: the default minimum is 30 items. At 6 it is.
    services.judge_settings_update(
        actor=admin_user,
        project=project,
        kappa_threshold=0.6,
        min_items=6,
        order_queues=False,
        second_review_on_zero=False,
    )
    row = (
        token_client(admin_user)
        .get(reverse("api-judge-calibration", args=[project.slug]))
        .json()["dimensions"][0]
    )
    assert row["trusted"] is True


def test_only_admins_see_calibration_and_change_settings(
    client, reviewer, expert_a, admin_user, project
):
    for user in (reviewer, expert_a):
        client.force_login(user)
        assert (
            client.get(reverse("review:judge:calibration", args=[project.slug])).status_code == 403
        )
        assert (
            client.post(
                reverse("review:judge:settings", args=[project.slug]),
                {"kappa_threshold": "0.5", "min_items": "10"},
            ).status_code
            == 403
        )
        api = token_client(user)
        assert api.get(reverse("api-judge-calibration", args=[project.slug])).status_code == 403
        assert api.get(reverse("api-judge-settings", args=[project.slug])).status_code == 403
    client.force_login(admin_user)
    url = reverse("review:judge:settings", args=[project.slug])
    assert client.get(url).status_code == 405
    empty = client.get(reverse("review:judge:calibration", args=[project.slug]))
    assert "No judge has scored items of this project yet" in empty.content.decode()


def test_settings_are_saved_from_the_page_and_the_api_and_bad_input_is_refused(
    client, admin_user, project
):
    assert not JudgeSettings.objects.exists()
    client.force_login(admin_user)
    url = reverse("review:judge:settings", args=[project.slug])
    bad = client.post(url, {"kappa_threshold": "3", "min_items": "1"})
    assert bad.status_code == 422 and not JudgeSettings.objects.exists()
    ok = client.post(url, {"kappa_threshold": "0.55", "min_items": "40", "order_queues": "on"})
    assert ok.status_code == 302
    saved = JudgeSettings.objects.get(project=project)
    assert (saved.kappa_threshold, saved.min_items, saved.order_queues) == (0.55, 40, True)
    assert saved.second_review_on_zero is False and saved.updated_by == admin_user
    api = token_client(admin_user)
    url = reverse("api-judge-settings", args=[project.slug])
    body = {
        "kappa_threshold": 0.7,
        "min_items": 50,
        "order_queues": False,
        "second_review_on_zero": True,
    }
    assert api.put(url, body, format="json").json() == body
    assert api.put(url, body | {"min_items": 1}, format="json").status_code == 400
    assert JudgeSettings.objects.get(project=project).min_items == 50


def test_the_first_pass_queue_is_ordered_by_judge_risk_only_when_on_and_trusted(
    admin_user, reviewer, expert_a, expert_b, make_item, project
):
    calibrated(make_item, expert_a, expert_b)
    safe = make_item()
    judge_scores(safe)  # all 2: no risk
    risky = make_item()
    judge_scores(risky, medical_correctness=0, clinical_utility=0)

    def first_claimed() -> int:
        item = queue_claim(user=reviewer, stage="first_review", project_id=project.pk)
        from review.services.queue import lease_release

        lease_release(user=reviewer, item_id=item.pk, stage="first_review")
        return item.pk

    # Off by default: arrival order.
    assert first_claimed() == safe.pk
    # On but not trusted (6 items < 30 needed): still arrival order.
    settings = dict(kappa_threshold=0.6, order_queues=True, second_review_on_zero=True)
    services.judge_settings_update(actor=admin_user, project=project, min_items=30, **settings)
    assert first_claimed() == safe.pk
    assert services.second_review_required(item=risky) is False
    # On and trusted: the riskiest item first, and the second-reviewer flag on its 0.
    services.judge_settings_update(actor=admin_user, project=project, min_items=6, **settings)
    assert first_claimed() == risky.pk
    assert services.second_review_required(item=risky) is True
    assert services.second_review_required(item=safe) is False
    # The flag draws the item for double review (review/quality), whatever the sample share.
    from review.quality.double import double_review_drawn
    from review.quality.models import DoubleReview

    assert project.double_review_percent == 0
    assert double_review_drawn(item=risky, reviewer_id=reviewer.pk) == DoubleReview.Why.JUDGE
    assert double_review_drawn(item=safe, reviewer_id=reviewer.pk) is None


def test_the_expert_panel_list_puts_the_riskiest_item_first_when_on_and_trusted(
    admin_user, expert_a, expert_b, make_item, project
):
    from review.selectors import expert_panel_queue
    from review.services.panels import panel_assign

    calibrated(make_item, expert_a, expert_b)
    safe, risky = make_item(status=Status.PANEL), make_item(status=Status.PANEL)
    judge_scores(safe)
    judge_scores(risky, medical_correctness=0)
    for item in (safe, risky):
        panel_assign(item=item, experts=[expert_a, expert_b], actor=admin_user)
    assert [r["item"].pk for r in expert_panel_queue(user=expert_a)] == [safe.pk, risky.pk]
    services.judge_settings_update(
        actor=admin_user,
        project=project,
        kappa_threshold=0.6,
        min_items=6,
        order_queues=True,
        second_review_on_zero=False,
    )
    assert [r["item"].pk for r in expert_panel_queue(user=expert_a)] == [risky.pk, safe.pk]
