"""The periodic refit reads verdicts from the database and stores posteriors and estimates."""

import pytest

from medcot.lifecycle import Status
from medcot.models import Project
from review.models import ConsensusVote, FirstPassReview
from review.quality.models import QualityFit, ReviewerEstimate, VerdictPosterior
from review.quality.refit import quality_refit, verdict_labels
from review.services.queue import queue_claim
from review.tasks import quality_refit_task
from tests.review.quality.test_controls import _discard, _pass

pytestmark = pytest.mark.django_db


def _vote(item, expert, agree=True):
    ConsensusVote.objects.create(
        item=item,
        version=item.current_version,
        expert=expert,
        answer="A" if agree else "B",
        approve_phrasing=True,
        comment="" if agree else "B is right",
    )


def test_it_gives_every_judged_item_a_posterior_and_every_person_an_estimate(
    make_item, make_control, reviewer, expert_a, expert_b, project
):
    Project.objects.filter(pk=project.pk).update(control_every=0)
    items = [make_item() for _ in range(6)]
    for item in items[:4]:
        _pass(item, reviewer)
    _discard(items[4], reviewer)
    consensus = [make_item(status=Status.CONSENSUS) for _ in range(3)]
    for item in consensus:
        _vote(item, expert_a)
        _vote(item, expert_b, agree=item is not consensus[2])
    fit = quality_refit(project_id=project.pk)
    assert fit.n_labels == 5 + 6 and fit.n_workers == 3
    rows = {p.item_id: p for p in VerdictPosterior.objects.all()}
    # Judged on the current version: the five first-pass items and the three consensus items.
    assert set(rows) == {i.pk for i in items[:5] + consensus}
    assert rows[consensus[0].pk].n_verdicts == 2
    assert rows[consensus[0].pk].p_valid > rows[consensus[2].pk].p_valid
    assert rows[items[0].pk].p_valid > rows[items[4].pk].p_valid
    assert ReviewerEstimate.objects.filter(project=project).count() == 3


def test_it_skips_a_refit_while_no_verdict_changed(make_item, reviewer, project):
    _pass(make_item(), reviewer)
    assert quality_refit(project_id=project.pk) is not None
    assert quality_refit(project_id=project.pk) is None
    _pass(make_item(), reviewer)
    assert quality_refit(project_id=project.pk) is not None
    assert QualityFit.objects.count() == 2
    # The task refits every project that changed, and is idempotent.
    assert quality_refit_task() == 0


def test_control_answers_anchor_the_fit_but_get_no_posterior(
    make_item, make_control, reviewer, project
):
    Project.objects.filter(pk=project.pk).update(control_every=1)
    control = make_control(valid=True)
    _pass(queue_claim(user=reviewer, stage="first_review"), reviewer)
    Project.objects.filter(pk=project.pk).update(control_every=0)
    real = make_item()
    _pass(real, reviewer)
    labels = verdict_labels(project_id=project.pk)
    assert labels.known == {control.item.current_version_id: 1}
    assert labels.labels.size == 2
    quality_refit(project_id=project.pk)
    assert list(VerdictPosterior.objects.values_list("item_id", flat=True)) == [real.pk]
    assert FirstPassReview.objects.count() == 1
