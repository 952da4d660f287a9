"""Dawid–Skene against crowd-kit's reference implementation, on fixed data sets whose crowd-kit
output is stored in `crowdkit_ds_fixture.json` (regenerate with make_crowdkit_fixture.py), so
the comparison runs everywhere; where crowd-kit is importable it is also run live."""

import json
from pathlib import Path

import numpy as np
import pytest

from review.quality.aggregation import (
    dawid_skene,
    sensitivity_specificity,
    wilson_interval,
)

FIXTURE = json.loads((Path(__file__).parent / "crowdkit_ds_fixture.json").read_text())
SETS = {entry["name"]: entry for entry in FIXTURE["sets"]}


def _fit(entry):
    rows = np.array(entry["rows"], dtype=np.int64)
    tasks, task_index = np.unique(rows[:, 0], return_inverse=True)
    workers, worker_index = np.unique(rows[:, 1], return_inverse=True)
    position = {int(t): i for i, t in enumerate(tasks)}
    known = {position[int(t)]: v for t, v in entry["known"].items()}
    result = dawid_skene(
        task_index,
        worker_index,
        rows[:, 2],
        known=known,
        max_iter=FIXTURE["n_iter"],
        tol=FIXTURE["tol"],
    )
    return result, tasks, workers


@pytest.mark.parametrize("name", sorted(SETS))
def test_it_matches_crowdkit_posteriors_within_1e_3(name):
    entry = SETS[name]
    result, tasks, _workers = _fit(entry)
    expected = entry["crowdkit"]["posteriors"]
    assert len(expected) == len(tasks)
    worst = max(
        abs(result.posteriors[i, 1] - expected[str(int(t))][1]) for i, t in enumerate(tasks)
    )
    assert worst < 1e-3, f"largest posterior difference {worst:.2e}"
    assert result.iterations == entry["crowdkit"]["iterations"]


@pytest.mark.parametrize("name", sorted(SETS))
def test_it_matches_crowdkit_confusion_matrices(name):
    entry = SETS[name]
    result, _tasks, workers = _fit(entry)
    position = {int(w): i for i, w in enumerate(workers)}
    for key, column in entry["crowdkit"]["confusion"].items():
        worker, label = (int(part) for part in key.split(":"))
        np.testing.assert_allclose(
            result.confusion[position[worker], label], column, atol=1e-3, err_msg=key
        )


def test_it_agrees_with_live_crowdkit_when_installed():
    crowdkit = pytest.importorskip(
        "crowdkit.aggregation",
        reason="crowd-kit is a test-only reference (it pulls in transformers and nltk); the "
        "stored fixture covers the comparison without it",
    )
    import pandas as pd

    entry = SETS["with-controls"]
    df = pd.DataFrame(entry["rows"], columns=["task", "worker", "label"])
    truth = pd.Series({int(k): v for k, v in entry["known"].items()})
    probas = crowdkit.DawidSkene(n_iter=100, tol=1e-5).fit_predict_proba(df, true_labels=truth)
    result, tasks, _ = _fit(entry)
    for i, task in enumerate(tasks):
        assert abs(result.posteriors[i, 1] - probas.loc[task, 1]) < 1e-3


def test_it_recovers_reviewer_accuracy_on_simulated_labels():
    rng = np.random.default_rng(7)
    n_items, n_workers = 3000, 10
    truth = (rng.random(n_items) < 0.85).astype(int)
    sens = rng.uniform(0.6, 0.98, n_workers)
    spec = rng.uniform(0.6, 0.98, n_workers)
    items = np.repeat(np.arange(n_items), 3)
    workers = np.concatenate([rng.choice(n_workers, 3, replace=False) for _ in range(n_items)])
    p_one = np.where(truth[items] == 1, sens[workers], 1 - spec[workers])
    labels = (rng.random(items.size) < p_one).astype(int)
    result = dawid_skene(items, workers, labels)
    est_sens, est_spec = sensitivity_specificity(result.confusion)
    # About 1,350 invalid labels against 7,650 valid ones: specificity is the noisier figure.
    assert np.abs(est_sens - sens).max() < 0.06
    assert np.abs(est_spec - spec).max() < 0.15
    assert (result.labels == truth).mean() > 0.95


def test_it_refuses_mismatched_or_negative_indices():
    with pytest.raises(ValueError, match="same length"):
        dawid_skene([0, 1], [0], [1, 0])
    with pytest.raises(ValueError, match="non-negative"):
        dawid_skene([0, -1], [0, 1], [1, 0])
    with pytest.raises(ValueError, match="n_classes"):
        dawid_skene([0, 1], [0, 1], [1, 2])


def test_it_returns_uniform_posteriors_without_labels():
    result = dawid_skene([], [], [], n_items=3, n_workers=2)
    assert result.posteriors.shape == (3, 2)
    assert np.allclose(result.posteriors, 0.5)


def test_it_computes_the_wilson_interval():
    low, high = wilson_interval(18, 20)
    # The textbook figure for 18/20: 0.699 to 0.972.
    assert round(low, 3) == 0.699 and round(high, 3) == 0.972
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and round(low, 3) == 0.722
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
