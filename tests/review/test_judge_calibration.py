"""The judge's calibration figures against a worked example done by hand, and the trusted
flag exactly at its threshold."""

import pytest

from generation.models import JUDGE_DIMENSIONS
from review.judge.calibration import (
    calibrate,
    is_trusted,
    lower_median,
    weighted_kappa_interval,
)
from review.reports.agreement import Statistic

# Ten item versions, judge score vs experts' score on one dimension:
#   (0,0)×2, (1,1)×3, (2,2)×3, (1,2)×1, (2,1)×1
PAIRS = [(0, 0)] * 2 + [(1, 1)] * 3 + [(2, 2)] * 3 + [(1, 2), (2, 1)]


def test_weighted_kappa_and_its_interval_match_the_hand_computation():
    # Marginals are 0.2, 0.4, 0.4 for both. Agreement weights 1 - (i-j)²/4: 1, 0.75, 0.
    # p_o = 0.8·1 + 0.2·0.75 = 0.95; p_e = 0.36 + 4·(0.08 or 0.16)·0.75 → 0.36 + 0.36 = 0.72.
    # κw = (0.95 - 0.72) / (1 - 0.72) = 0.8214286.
    # Fleiss-Cohen-Everitt: w̄_i = w̄_j = (0.5, 0.85, 0.7); Σ p_ij (w_ij - (w̄_i + w̄_j)(1-κ))²
    # = 0.2·0.821429² + 0.3·0.696429² + 0.3·0.75² + 2·0.1·0.473214² = 0.4939887;
    # minus (κ - p_e(1-κ))² = 0.692857² = 0.4800510; over n(1-p_e)² = 0.784: var = 0.0177777,
    # SE = 0.1333333; interval 0.8214286 ± 1.96·0.1333333 = (0.5601, 1.0828 → 1).
    stat = weighted_kappa_interval(PAIRS)
    assert stat.n_items == 10
    assert stat.value == pytest.approx(0.8214286, abs=1e-6)
    assert stat.ci_low == pytest.approx(0.8214286 - 1.959964 * 0.1333333, abs=1e-5)
    assert stat.ci_high == 1.0


def test_the_calibration_table_reproduces_the_example_on_every_figure():
    # Experts: two per version; the reference is their lower median, so (1, 2) counts as 1
    # and (2, 2) as 2. Each version gets PAIRS' expert score for every dimension.
    judge, experts = {}, {}
    for version_id, (j, e) in enumerate(PAIRS, start=1):
        judge[version_id] = {
            "scores": dict.fromkeys(JUDGE_DIMENSIONS, j),
            "first_wrong_step": 3 if j == 0 else None,
        }
        experts[version_id] = {d: [e, 2] for d in JUDGE_DIMENSIONS}
    # One version only the judge scored: not a calibration unit.
    judge[99] = {"scores": dict.fromkeys(JUDGE_DIMENSIONS, 0), "first_wrong_step": None}
    first_pass = [(1, {"correctness": 0, "sufficiency": 1, "overall": 0})] + [
        (v, {"correctness": 1, "sufficiency": 1, "overall": 1}) for v in range(2, 11)
    ]
    steps = [(1, 3), (2, 2), (3, None), (4, 1)]
    result = calibrate(
        judge=judge,
        experts=experts,
        first_pass=first_pass,
        expert_steps=steps,
        dimensions=JUDGE_DIMENSIONS,
        threshold=0.5,
        min_items=10,
    )
    row = result.dimensions[0]
    assert row.n_items == 10 and row.kappa.value == pytest.approx(0.8214286, abs=1e-6)
    # Confusion, judge rows × expert columns.
    assert row.confusion == [[2, 0, 0], [0, 3, 1], [0, 1, 3]]
    # ICC(2,1) by hand: grand mean 1.2, equal column means (SS_cols = 0), SS_rows = 10.2,
    # SS_total = 11.2, SS_error = 1.0; MSR = 1.1333, MSE = 0.1111, MSC = 0:
    # (MSR - MSE) / (MSR + MSE + 2(MSC - MSE)/10) = 1.02222 / 1.22222 = 0.836364.
    assert row.icc.value == pytest.approx(0.836364, abs=1e-5)
    assert row.icc.ci_low is not None and row.icc.ci_low < row.icc.value < row.icc.ci_high
    assert row.trusted and result.trusted == set(JUDGE_DIMENSIONS)
    # First pass: the judge passes correctness on 8 of 10 (scores ≥ 1); the people pass 9;
    # they agree on version 1 (both 0) and on the 8 passes, not on version 2 (judge 0).
    correctness = result.first_pass[0]
    assert correctness.criterion == "correctness"
    assert correctness.agreement.value == pytest.approx(9 / 10)
    assert correctness.agreement.n_items == 10
    # Cohen's κ on [(0,0), (0,1), (1,1)×8]: p_o = 0.9, p_e = 0.2·0.1 + 0.8·0.9 = 0.74.
    assert correctness.kappa.value == pytest.approx((0.9 - 0.74) / (1 - 0.74))
    # Steps: judge says 3 on versions 1 and 2 (judge score 0), none on 3 and 4.
    # Exact: v1 3=3 yes, v2 3≠2 no, v3 none=none yes, v4 none≠1 no → 2/4.
    assert result.steps.n == 4 and result.steps.exact.value == pytest.approx(0.5)
    assert result.n_judged == 11


def test_lower_median_takes_the_lower_of_two():
    assert lower_median([2, 1]) == 1 and lower_median([0, 2, 2]) == 2 and lower_median([1]) == 1


def test_the_trusted_flag_flips_exactly_at_its_threshold():
    stat = weighted_kappa_interval(PAIRS)
    low = stat.ci_low
    assert is_trusted(stat, threshold=low, min_items=10)
    assert not is_trusted(stat, threshold=low + 1e-9, min_items=10)
    assert is_trusted(stat, threshold=low - 1e-9, min_items=10)
    # ... and at its number of items.
    assert not is_trusted(stat, threshold=low, min_items=11)
    # An undefined interval is never trusted.
    assert not is_trusted(Statistic(None, 50), threshold=-1.0, min_items=2)


def test_no_variation_leaves_kappa_undefined_not_zero():
    stat = weighted_kappa_interval([(2, 2)] * 5)
    assert stat.value is None and stat.ci_low is None
