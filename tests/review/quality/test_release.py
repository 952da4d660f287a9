"""Releases carry each record's verdict confidence, and controls never reach them."""

import json

import pytest

from medcot.lifecycle import Status
from medcot.models import Project
from review.models import ConsensusVote
from review.quality.models import ControlItem
from review.quality.refit import quality_refit
from review.releases.services import release_build, release_create, release_directory
from review.services.consensus import consensus_vote
from review.services.queue import queue_claim
from tests.review.quality.test_controls import _pass

pytestmark = pytest.mark.django_db


def test_a_release_carries_the_posterior_and_never_a_control(
    make_item, make_control, admin_user, reviewer, expert_a, expert_b, project
):
    Project.objects.filter(pk=project.pk).update(control_every=1)
    fp_control = make_control(valid=True)
    cons_control = make_control(stage=Status.CONSENSUS, valid=True)
    _pass(queue_claim(user=reviewer, stage="first_review"), reviewer)
    for expert in (expert_a, expert_b):
        item = queue_claim(user=expert, stage="consensus")
        assert item.pk == cons_control.item_id
        consensus_vote(item=item, expert=expert, answer="A", approve_phrasing=True)
    Project.objects.filter(pk=project.pk).update(control_every=0)
    real = make_item(status=Status.CONSENSUS)
    consensus_vote(item=real, expert=expert_a, answer="A", approve_phrasing=True)
    consensus_vote(item=real, expert=expert_b, answer="A", approve_phrasing=True)
    real.refresh_from_db()
    assert real.status == Status.APPROVED
    quality_refit(project_id=project.pk)

    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    release = release_build(release_id=release.pk)
    directory = release_directory(release)
    records = [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines()]
    controls = set(ControlItem.objects.values_list("item_id", flat=True)) | {
        fp_control.source_item_id,
        cons_control.source_item_id,
    }
    assert [r["item_id"] for r in records] == [real.pk]
    assert not controls & {r["item_id"] for r in records}
    assert records[0]["n_verdicts"] == 2
    assert 0.5 < records[0]["verdict_confidence"] <= 1
    # Only the real item's votes are votes.
    assert set(ConsensusVote.objects.values_list("item_id", flat=True)) == {real.pk}
    card = (directory / "README.md").read_text()
    assert "## Verdict confidence" in card


def test_the_card_headings_of_confidence_and_judge_follow_the_card_language(project):
    # A Chinese card translates every heading (templates/releases/card.md); these two sections
    # are written in Python and were left in English.
    from django.utils import translation

    from review.judge.release import card_section
    from review.quality.card import ConfidenceStats, quality_card_lines

    stats = ConfidenceStats()
    stats.add({"verdict_confidence": 0.9, "n_verdicts": 2})
    with translation.override("zh-hans"):
        assert "## 结论置信度" in quality_card_lines(stats.as_dict())
        assert "## 机器评审" in card_section(project=project)
    with translation.override("en"):
        assert "## Verdict confidence" in quality_card_lines(stats.as_dict())
        assert "## Machine judge" in card_section(project=project)
