"""The agreement module against published worked examples and known identities."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from review.reports.agreement import (
    AgreementError,
    Statistic,
    cohen_kappa,
    f_quantile,
    icc_2_1,
    krippendorff_alpha,
    percent_agreement,
    summarize,
    summary_as_dict,
)

N = None

# Shrout P.E. & Fleiss J.L. (1979), Psychol Bull 86:420–428, Table 2: four judges rate six
# targets. The paper reports ICC(2,1) = .29; the 95% CI (.019, .76) is the one R's
# psych::ICC prints for the same data (its `sf` example), using McGraw & Wong's (1996) formula.
SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]

# Krippendorff K. (2011) "Computing Krippendorff's Alpha-Reliability", example C: four
# observers, twelve units, values 1–5, with missing data. Published: nominal α = .743,
# ordinal α = .815, interval α = .849. Units are rows, observers A–D columns.
KRIPPENDORFF_C = [
    [1, 1, N, 1],
    [2, 2, 3, 2],
    [3, 3, 3, 3],
    [3, 3, 3, 3],
    [2, 2, 2, 2],
    [1, 2, 3, 4],
    [4, 4, 4, 4],
    [1, 1, 2, 1],
    [2, 2, 2, 2],
    [N, 5, 5, 5],
    [N, N, 1, 1],
    [N, N, 3, N],
]

# Krippendorff (2011), example A: binary data, two observers, ten units; α = .095.
KRIPPENDORFF_A = list(
    zip([0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0], strict=True)
)


def test_it_reproduces_shrout_and_fleiss_icc_2_1_with_its_confidence_interval():
    stat = icc_2_1(SHROUT_FLEISS)
    assert round(stat.value, 2) == 0.29
    assert stat.n_items == 6
    assert round(stat.ci_low, 3) == 0.019
    assert round(stat.ci_high, 2) == 0.76


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_it_reproduces_krippendorff_example_c_with_missing_data(level, expected):
    stat = krippendorff_alpha(KRIPPENDORFF_C, level=level)
    assert round(stat.value, 3) == expected
    # The last unit has a single value and cannot be paired.
    assert stat.n_items == 11


def test_it_reproduces_krippendorff_example_a_for_binary_data():
    stat = krippendorff_alpha(KRIPPENDORFF_A)
    assert round(stat.value, 3) == 0.095
    assert stat.n_items == 10


def test_it_reproduces_the_textbook_binary_kappa():
    # The standard 2×2 worked example (Wikipedia, "Cohen's kappa"): 50 grant proposals,
    # both yes 20, A yes/B no 5, A no/B yes 10, both no 15: p_o = .70, p_e = .50, κ = .40.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    stat = cohen_kappa(pairs)
    assert stat.value == pytest.approx(0.4)
    assert stat.n_items == 50
    assert percent_agreement(pairs).value == pytest.approx(0.7)


def test_it_computes_nominal_kappa_for_three_categories():
    # 100 patients, proportions .75/.01/.04, .05/.04/.01, .00/.00/.10 (rows rater 1).
    # By hand: p_o = .89, p_e = .80·.80 + .10·.05 + .10·.15 = .66, κ = .23/.34.
    cells = {("p", "p"): 75, ("p", "n"): 1, ("p", "o"): 4, ("n", "p"): 5, ("n", "n"): 4}
    cells |= {("n", "o"): 1, ("o", "o"): 10}
    pairs = [pair for pair, m in cells.items() for _ in range(m)]
    assert cohen_kappa(pairs).value == pytest.approx(0.23 / 0.34)


def test_it_computes_quadratic_weighted_kappa_by_hand():
    # Rubric scores 0–2 by two raters on five items. Disagreement weights (i-j)²:
    # observed mean = (0 + 1 + 0 + 4 + 0)/5 = 1.0; rater means give the expected
    # mean Σ row_i col_j (i-j)² / n² = 39/25 (rows 2,2,1; columns 1,1,3), so κ_w = 1 - 25/39.
    pairs = [(0, 0), (1, 2), (2, 2), (0, 2), (1, 1)]
    stat = cohen_kappa(pairs, categories=(0, 1, 2), weights="quadratic")
    assert stat.value == pytest.approx(1 - 25 / 39)


scores = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=60)


@given(scores)
def test_it_matches_the_fleiss_cohen_identity_for_quadratic_weights(pairs):
    # Fleiss & Cohen (1973): quadratic-weighted κ = 2·s_xy / (s_x² + s_y² + (x̄ - ȳ)²) with
    # population (1/n) moments.
    n = len(pairs)
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in pairs) / n
    sx2 = sum((x - mx) ** 2 for x in xs) / n
    sy2 = sum((y - my) ** 2 for y in ys) / n
    denominator = sx2 + sy2 + (mx - my) ** 2
    stat = cohen_kappa(pairs, categories=(0, 1, 2), weights="quadratic")
    if denominator == 0:
        assert stat.value is None
    else:
        assert stat.value == pytest.approx(2 * sxy / denominator, abs=1e-9)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_it_gives_the_same_value_for_weighted_and_plain_kappa_on_two_categories(pairs):
    plain = cohen_kappa(pairs, categories=(False, True))
    weighted = cohen_kappa(pairs, categories=(False, True), weights="quadratic")
    if plain.value is None:
        assert weighted.value is None
    else:
        assert weighted.value == pytest.approx(plain.value)


def test_it_matches_printed_f_table_values():
    # Upper percentage points of the F distribution as printed in standard tables.
    assert f_quantile(0.95, 5, 10) == pytest.approx(3.33, abs=0.005)
    assert f_quantile(0.975, 5, 10) == pytest.approx(4.24, abs=0.005)
    assert f_quantile(0.99, 10, 20) == pytest.approx(3.37, abs=0.005)


def test_it_returns_none_rather_than_a_number_when_a_statistic_is_undefined():
    assert cohen_kappa([]).value is None
    assert cohen_kappa([(1, 1), (1, 1)]).value is None
    assert cohen_kappa([(1, 1), (1, 1)]).n_items == 2
    assert krippendorff_alpha([[1, N], [N, 2]]).n_items == 0
    assert icc_2_1([]).value is None


def test_it_refuses_bad_input_with_a_clear_error():
    with pytest.raises(AgreementError, match="outside the categories"):
        cohen_kappa([(0, 3)], categories=(0, 1, 2))
    with pytest.raises(AgreementError, match="exactly two"):
        cohen_kappa([(0, 1, 2)])
    with pytest.raises(AgreementError, match="every rater"):
        icc_2_1([[1, 2], [1]])
    with pytest.raises(AgreementError, match="Unknown level"):
        krippendorff_alpha([[1, 2]], level="ratio")


def test_it_reports_each_pair_and_the_overall_values_with_their_item_counts():
    ratings = {
        1: {"E1": 2, "E2": 2},
        2: {"E1": 1, "E2": 2},
        3: {"E1": 0, "E2": 0},
        4: {"E1": 2, "E3": 2},
        5: {"E2": 1, "E3": 1},
        6: {"E1": 2, "E2": 2, "E3": 1},
        7: {"E1": 2},
    }
    summary = summarize(ratings, kind="ordinal", categories=(0, 1, 2))
    pairs = {(p["rater_a"], p["rater_b"]): p for p in summary["pairs"]}
    assert set(pairs) == {("E1", "E2"), ("E1", "E3"), ("E2", "E3")}
    assert pairs[("E1", "E2")]["percent_agreement"] == Statistic(3 / 4, 4)
    assert pairs[("E1", "E2")]["kappa"] == cohen_kappa(
        [(2, 2), (1, 2), (0, 0), (2, 2)], categories=(0, 1, 2), weights="quadratic"
    )
    assert pairs[("E1", "E3")]["kappa"].n_items == 2
    overall = summary["overall"]
    # Item 7 has a single rating and counts nowhere. Pairs within items: 1 agree, 0, 1, 1, 1,
    # and item 6 has three pairs of which one agrees: 5/8 over six items.
    assert overall["percent_agreement"] == Statistic(5 / 8, 6)
    defined = [p["kappa"].value for p in summary["pairs"] if p["kappa"].value is not None]
    assert overall["weighted_kappa_mean"].value == pytest.approx(sum(defined) / len(defined))
    assert overall["alpha_ordinal"] == krippendorff_alpha(
        [list(r.values()) for r in ratings.values()], level="ordinal", categories=(0, 1, 2)
    )
    # ICC columns: each item's first two raters in rater order.
    rows = [[2, 2], [1, 2], [0, 0], [2, 2], [1, 1], [2, 2]]
    assert overall["icc_2_1"].value == pytest.approx(icc_2_1(rows).value)
    assert overall["icc_2_1"].n_items == 6
    as_dict = summary_as_dict(summary)
    assert as_dict["overall"]["icc_2_1"]["n_items"] == 6
    assert as_dict["pairs"][0]["rater_a"] == "E1"


panel = st.dictionaries(
    st.integers(0, 40),
    st.dictionaries(st.sampled_from(["E1", "E2", "E3", "E4"]), st.integers(0, 2), max_size=4),
    max_size=30,
)


@given(panel)
def test_it_streams_to_the_same_values_as_the_batch_functions(ratings):
    summary = summarize(ratings, kind="ordinal", categories=(0, 1, 2))
    units = [list(r.values()) for r in ratings.values()]
    expected_alpha = krippendorff_alpha(units, level="ordinal", categories=(0, 1, 2))
    alpha = summary["overall"]["alpha_ordinal"]
    assert alpha.n_items == expected_alpha.n_items
    if expected_alpha.value is None:
        assert alpha.value is None
    else:
        assert alpha.value == pytest.approx(expected_alpha.value)
    rows = [[r[k] for k in sorted(r)][:2] for _, r in sorted(ratings.items()) if len(r) >= 2]
    expected_icc = icc_2_1(rows)
    icc = summary["overall"]["icc_2_1"]
    assert icc.n_items == expected_icc.n_items
    if expected_icc.value is None:
        assert icc.value is None
    else:
        assert icc.value == pytest.approx(expected_icc.value, abs=1e-9)


def test_it_summarizes_binary_votes_with_nominal_statistics():
    votes = {1: {"A": True, "B": True}, 2: {"A": True, "B": False}, 3: {"A": False, "B": False}}
    summary = summarize(votes, kind="binary", categories=(False, True))
    assert set(summary["overall"]) == {"percent_agreement", "kappa_mean", "alpha_nominal"}
    assert summary["pairs"][0]["kappa"] == cohen_kappa(
        [(True, True), (True, False), (False, False)], categories=(False, True)
    )
    with pytest.raises(AgreementError, match="outside the categories"):
        summarize({1: {"A": 3, "B": 1}}, kind="ordinal", categories=(0, 1, 2))


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=25))
def test_it_never_fails_on_icc_and_brackets_it_with_its_interval(rows):
    stat = icc_2_1(rows)
    assert stat.n_items == len(rows)
    if stat.value is not None and stat.ci_low is not None:
        assert stat.ci_low <= stat.value + 1e-9
        assert stat.value <= stat.ci_high + 1e-9
