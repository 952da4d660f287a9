"""The dashboard's numbers: the §3.2 funnel, distributions, people and model usage."""

from decimal import Decimal

import pytest

from medcot.lifecycle import Status
from review.reports.selectors import (
    item_distributions,
    llm_usage_by_run,
    project_agreement,
    project_dashboard,
    project_funnel,
    reviewer_throughput,
    rubric_distributions,
)

pytestmark = pytest.mark.django_db


def test_it_counts_the_funnel_in_the_papers_terms(project, make_item, expert_a, expert_b):
    make_item()
    make_item(modified=True)
    make_item(panel_scores={expert_a: [2, 2, 2, 2, 2], expert_b: [1, 1, 1, 1, 1]})
    make_item(status=Status.DISCARDED)
    make_item(status=Status.CONSENSUS)
    funnel = project_funnel(project=project)
    assert funnel["constructed"] == 5
    assert funnel["seeds"] == 5
    assert funnel["confirmed_first_pass"] == 5
    assert funnel["escalated"] == 1
    assert funnel["escalated_share"] == pytest.approx(1 / 5)
    assert funnel["finalized"] == 3
    assert (funnel["unrevised"], funnel["modified"], funnel["discarded"]) == (2, 1, 1)
    assert funnel["decided"] == 4
    assert funnel["unrevised_share"] == pytest.approx(0.5)
    assert funnel["discarded_share"] == pytest.approx(0.25)
    assert funnel["in_progress"] == 1


def test_it_reports_an_empty_project_without_dividing_by_zero(project):
    funnel = project_funnel(project=project)
    assert funnel["constructed"] == 0
    assert funnel["escalated_share"] is None
    assert funnel["unrevised_share"] is None
    data = project_dashboard(project=project)
    assert data["llm"] == []
    assert data["throughput"]["people"] == []
    assert data["agreement"]["consensus_key"]["overall"]["percent_agreement"]["value"] is None


def test_it_gives_rubric_means_and_distributions(project, make_item, expert_a, expert_b):
    make_item(panel_scores={expert_a: [2, 2, 1, 0, 2], expert_b: [2, 1, 1, 0, 0]})
    rubric = rubric_distributions(project=project)
    assert rubric["medical_correctness"] == {"counts": [0, 0, 2], "n": 2, "mean": 2.0}
    assert rubric["reasoning_structure"]["mean"] == pytest.approx(1.5)
    assert rubric["terminology_clarity"]["counts"] == [2, 0, 0]
    agreement = project_agreement(project=project)
    overall = agreement["rubric"]["medical_correctness"]["overall"]
    assert overall["percent_agreement"] == {
        "value": 1.0,
        "n_items": 1,
        "ci_low": None,
        "ci_high": None,
    }
    pair = agreement["rubric"]["reasoning_structure"]["pairs"][0]
    assert {pair["rater_a"], pair["rater_b"]} == {
        expert_a.medcot_profile.pseudonym,
        expert_b.medcot_profile.pseudonym,
    }
    assert pair["kappa"]["n_items"] == 1


def test_it_counts_items_by_specialty_level_and_difficulty(project, make_item):
    make_item(specialty="Neurology", difficulty="hard", cognitive_level="recall")
    make_item(specialty="Neurology", difficulty="easy", cognitive_level="")
    make_item(specialty="Cardiology", difficulty="hard", cognitive_level="recall")
    dist = item_distributions(project=project)
    assert dist["specialty"] == [("Neurology", 2), ("Cardiology", 1)]
    assert dist["difficulty"] == [("hard", 2), ("easy", 1)]
    assert dict(dist["cognitive_level"]) == {"recall": 2, "": 1}


def test_it_reports_throughput_by_pseudonym(project, make_item, reviewer, expert_a, expert_b):
    make_item(panel_scores={expert_a: [2] * 5, expert_b: [2] * 5})
    make_item()
    people = {p["who"]: p for p in reviewer_throughput(project=project)["people"]}
    reviewer_row = people[reviewer.medcot_profile.pseudonym]
    assert reviewer_row["first_pass"] == 2
    assert reviewer_row["median_seconds"] == 40
    expert_row = people[expert_a.medcot_profile.pseudonym]
    assert (expert_row["panel"], expert_row["consensus"]) == (1, 2)
    assert reviewer.username not in people


def test_it_summarizes_model_calls_by_run(project):
    from generation.models import LLMCall, LLMProfile, Run

    profile = LLMProfile.objects.create(name="p", base_url="http://127.0.0.1:9/v1", model="m")
    run = Run.objects.create(project=project, profile=profile, stage="cot")
    for i, latency in enumerate([100, 200, 300, 400, 1000]):
        LLMCall.objects.create(
            profile=profile,
            run=run,
            task="cot",
            model="m",
            outcome="ok",
            prompt_tokens=10,
            completion_tokens=20 + i,
            latency_ms=latency,
            cost=Decimal("0.5"),
        )
    LLMCall.objects.create(
        profile=profile, run=run, task="cot", model="m", outcome="transient", latency_ms=9000
    )
    [row] = llm_usage_by_run(project=project)
    assert (row["calls"], row["ok"], row["failed"]) == (6, 5, 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (50, 110)
    assert row["cost"] == Decimal("2.5")
    # Latency percentiles are over successful calls only (nearest rank).
    assert (row["p50"], row["p90"], row["p99"]) == (300, 1000, 1000)
