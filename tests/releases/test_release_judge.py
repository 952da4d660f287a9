"""The machine judge in a release: its own named field with model and prompt version, apart
from the experts' scores, and the card's "Machine judge" section with the calibration table."""

import json

import pytest

from generation.models import JUDGE_DIMENSIONS
from review.judge import services
from review.releases.services import release_build, release_create, release_directory
from tests.review.test_judge_anchoring import judge_scores

pytestmark = pytest.mark.django_db


def test_judge_scores_are_released_in_their_own_column_and_the_card_has_the_section(
    project, admin_user, make_item
):
    services.routing_cache_clear()
    judged, plain = make_item(), make_item()
    judge_scores(judged, medical_correctness=1)
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    release = release_build(release_id=release.pk)
    directory = release_directory(release)
    records = {
        r["item_id"]: r
        for r in map(json.loads, (directory / "data.jsonl").read_text().splitlines())
    }
    entry = records[judged.pk]["machine_judge_scores"]
    assert entry == [
        {
            "model": "sim-judge",
            "prompt_version": "judge/default/en v1",
            **dict.fromkeys(JUDGE_DIMENSIONS, 2),
            "medical_correctness": 1,
            "first_wrong_step": 2,
            "answer": "A",
        }
    ]
    assert records[plain.pk]["machine_judge_scores"] == []
    # The experts' scores are untouched by the judge's.
    assert all(s["expert"].startswith("x-") for s in records[judged.pk]["rubric_scores"])
    header = (directory / "data.csv").read_text().splitlines()[0]
    assert "machine_judge_scores" in header.split(",")
    card = (directory / "README.md").read_text()
    assert "## Machine judge" in card
    assert "| Dimension | n | weighted κ | 95 % CI | ICC(2,1) | 95 % CI | Trusted |" in card
    assert "| medical_correctness |" in card
    assert "queues in arrival order" in card and "| `machine_judge_scores` |" in card
