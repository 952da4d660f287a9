"""How far the machine judge agrees with the people, per project and per judge (an LLM
profile with one prompt version): for every rubric dimension the quadratic weighted κ and
ICC(2,1) against the experts with 95 % intervals, the confusion matrix and the number of items;
agreement with first-pass verdicts; and agreement on the first wrong step of the CoT.

Units: an item version scored by both the judge and the experts. The experts' score of a
version is the lower median of their scores on it (for two experts the lower of the two), so
the reference never flatters an item two physicians disagreed on. First-pass and step-level
agreement count one unit per human verdict.

A dimension is *trusted* when the lower end of its weighted κ interval reaches the project's
threshold on at least the project's minimum number of items (`JudgeSettings`).

References: Fleiss J.L., Cohen J., Everitt B.S. (1969) Large sample standard errors of kappa and
weighted kappa. Psychol Bull 72:323–327 (the variance below); ICC(2,1) and its interval from
review.agreement (McGraw & Wong 1996).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from review.reports.agreement import (
    Statistic,
    cohen_kappa,
    icc_2_1,
    kappa_from_table,
    percent_agreement,
)

CATEGORIES = (0, 1, 2)
Z_95 = 1.959963984540054


def weighted_kappa_interval(
    pairs: Iterable[tuple[int, int]],
    *,
    categories: Sequence[int] = CATEGORIES,
    confidence_z: float = Z_95,
) -> Statistic:
    """Quadratic weighted κ with its large-sample interval (Fleiss, Cohen & Everitt 1969),
    clipped to [-1, 1]. Undefined (None) with fewer than two items or no variation."""
    pairs = list(pairs)
    n = len(pairs)
    kappa = kappa_from_table(Counter(pairs), categories=categories, weights="quadratic")
    if kappa.value is None or n < 2:
        return Statistic(kappa.value, n)
    k = len(categories)
    index = {c: i for i, c in enumerate(categories)}
    p = [[0.0] * k for _ in range(k)]
    for a, b in pairs:
        p[index[a]][index[b]] += 1.0 / n
    rows = [sum(p[i]) for i in range(k)]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    span = (k - 1) ** 2
    w = [[1.0 - (i - j) ** 2 / span for j in range(k)] for i in range(k)]
    p_e = sum(rows[i] * cols[j] * w[i][j] for i in range(k) for j in range(k))
    w_row = [sum(cols[j] * w[i][j] for j in range(k)) for i in range(k)]
    w_col = [sum(rows[i] * w[i][j] for i in range(k)) for j in range(k)]
    value = kappa.value
    spread = sum(
        p[i][j] * (w[i][j] - (w_row[i] + w_col[j]) * (1.0 - value)) ** 2
        for i in range(k)
        for j in range(k)
    )
    variance = (spread - (value - p_e * (1.0 - value)) ** 2) / (n * (1.0 - p_e) ** 2)
    se = math.sqrt(max(variance, 0.0))
    low, high = value - confidence_z * se, value + confidence_z * se
    return Statistic(value, n, max(-1.0, low), min(1.0, high))


def lower_median(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def is_trusted(statistic: Statistic, *, threshold: float, min_items: int) -> bool:
    """The rule of the calibration page: the interval's lower end reaches the threshold on at
    least `min_items` items. An undefined interval is never trusted."""
    return (
        statistic.ci_low is not None
        and statistic.n_items >= min_items
        and statistic.ci_low >= threshold - 1e-12
    )


@dataclass(frozen=True)
class DimensionCalibration:
    dimension: str
    n_items: int
    kappa: Statistic
    icc: Statistic
    # confusion[judge score][expert score] = items
    confusion: list[list[int]]
    trusted: bool


def dimension_calibration(
    dimension: str, pairs: list[tuple[int, int]], *, threshold: float, min_items: int
) -> DimensionCalibration:
    """`pairs` are (judge score, experts' score) per item version."""
    kappa = weighted_kappa_interval(pairs)
    icc = icc_2_1([list(pair) for pair in pairs]) if pairs else Statistic(None, 0)
    confusion = [[0] * len(CATEGORIES) for _ in CATEGORIES]
    for judge_score, expert_score in pairs:
        confusion[judge_score][expert_score] += 1
    return DimensionCalibration(
        dimension=dimension,
        n_items=len(pairs),
        kappa=kappa,
        icc=icc,
        confusion=confusion,
        trusted=is_trusted(kappa, threshold=threshold, min_items=min_items),
    )


@dataclass(frozen=True)
class BinaryAgreement:
    """The judge against a binary human verdict: κ and the share agreeing."""

    criterion: str
    kappa: Statistic
    agreement: Statistic


@dataclass(frozen=True)
class StepAgreement:
    """The judge's first wrong step against the experts' (None = no wrong step)."""

    n: int
    exact: Statistic  # same step, or both found none
    flagged_kappa: Statistic  # agreement on whether there is a wrong step at all


@dataclass
class Calibration:
    dimensions: list[DimensionCalibration]
    first_pass: list[BinaryAgreement]
    steps: StepAgreement
    threshold: float
    min_items: int
    n_judged: int = 0
    feedback: dict[str, int] = field(default_factory=dict)

    @property
    def trusted(self) -> set[str]:
        return {d.dimension for d in self.dimensions if d.trusted}


def binary_agreement(criterion: str, pairs: list[tuple[int, int]]) -> BinaryAgreement:
    return BinaryAgreement(
        criterion=criterion,
        kappa=cohen_kappa(pairs, categories=(0, 1)) if pairs else Statistic(None, 0),
        agreement=percent_agreement(pairs),
    )


def step_agreement(pairs: list[tuple[int | None, int | None]]) -> StepAgreement:
    exact = percent_agreement([(a or 0, b or 0) for a, b in pairs])
    flagged = [(int(a is not None), int(b is not None)) for a, b in pairs]
    return StepAgreement(
        n=len(pairs),
        exact=exact,
        flagged_kappa=cohen_kappa(flagged, categories=(0, 1)) if pairs else Statistic(None, 0),
    )


def _first_pass_pairs(judge: dict, first_pass: list) -> dict[str, list[tuple[int, int]]]:
    """(judge, reviewer) pairs per first-pass criterion: the judge "passes" a criterion when it
    scores the matching dimension 1 or 2."""
    fp_pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for version_id, verdict in first_pass:
        judged = judge.get(version_id)
        if judged is None:
            continue
        s = judged["scores"]
        judge_verdict = {
            "correctness": int(s["medical_correctness"] >= 1),
            "sufficiency": int(s["information_sufficiency"] >= 1),
        }
        judge_verdict["overall"] = judge_verdict["correctness"] * judge_verdict["sufficiency"]
        for criterion in ("correctness", "sufficiency", "overall"):
            fp_pairs[criterion].append((judge_verdict[criterion], verdict[criterion]))
    return fp_pairs


def calibrate(
    *,
    judge: dict[int, dict],
    experts: dict[int, dict[str, list[int]]],
    first_pass: list[tuple[int, dict[str, int]]],
    expert_steps: list[tuple[int, int | None]],
    dimensions: Sequence[str],
    threshold: float,
    min_items: int,
) -> Calibration:
    """The figures from plain data, so they can be checked by hand.

    - `judge`: {version id: {"scores": {dimension: 0-2}, "first_wrong_step": int | None}}
    - `experts`: {version id: {dimension: [each expert's score]}}
    - `first_pass`: [(version id, {"correctness": 0/1, "sufficiency": 0/1, "overall": 0/1})]
    - `expert_steps`: [(version id, an expert's first wrong step or None)]
    """
    per_dimension: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for version_id, scored in sorted(experts.items()):
        judged = judge.get(version_id)
        if judged is None:
            continue
        for dimension in dimensions:
            if scored.get(dimension):
                per_dimension[dimension].append(
                    (judged["scores"][dimension], lower_median(scored[dimension]))
                )
    rows = [
        dimension_calibration(d, per_dimension.get(d, []), threshold=threshold, min_items=min_items)
        for d in dimensions
    ]
    fp_pairs = _first_pass_pairs(judge, first_pass)
    first = [
        binary_agreement(c, fp_pairs.get(c, [])) for c in ("correctness", "sufficiency", "overall")
    ]
    steps = [
        (judge[version_id]["first_wrong_step"], step)
        for version_id, step in expert_steps
        if version_id in judge
    ]
    return Calibration(
        dimensions=rows,
        first_pass=first,
        steps=step_agreement(steps),
        threshold=threshold,
        min_items=min_items,
        n_judged=len(judge),
    )
