"""Inter-rater agreement statistics, in pure Python.

Every function returns a `Statistic` that carries the number of items behind the value, because
a κ of 0.8 on 6 items and one on 6,000 items are different claims. A value is `None` when the
statistic is undefined for the data (no items, or no variation to agree on), never a made-up 0.

Conventions:
- `pairs` are (rating by rater 1, rating by rater 2) tuples, one per item.
- `ratings` are `{item: {rater: value}}`; a rater who did not rate an item is simply absent.
- Ordinal categories are given in order (e.g. `(0, 1, 2)` for the rubric); without them the
  sorted observed values are used.

References (the tests reproduce their worked examples):
- Cohen J. (1960) A coefficient of agreement for nominal scales. Educ Psychol Meas 20:37–46.
- Cohen J. (1968) Weighted kappa. Psychol Bull 70:213–220; quadratic weights as in Fleiss &
  Cohen (1973) Educ Psychol Meas 33:613–619.
- Krippendorff K. (2011) Computing Krippendorff's Alpha-Reliability. Annenberg School for
  Communication, University of Pennsylvania.
- Shrout P.E., Fleiss J.L. (1979) Intraclass correlations: uses in assessing rater reliability.
  Psychol Bull 86:420–428; McGraw K.O., Wong S.P. (1996) Forming inferences about some intraclass
  correlation coefficients. Psychol Methods 1:30–46 (confidence interval for ICC(A,1)).
- Light R.J. (1971) Measures of response agreement for qualitative data. Psychol Bull 76:365–377
  (the mean of pairwise κ as an overall κ for more than two raters).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Literal

Level = Literal["nominal", "ordinal", "interval"]
Weights = Literal["linear", "quadratic"] | None


class AgreementError(ValueError):
    """The input cannot be used for the statistic asked for."""


@dataclass(frozen=True)
class Statistic:
    value: float | None
    n_items: int
    ci_low: float | None = None
    ci_high: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairStatistic:
    rater_a: Hashable
    rater_b: Hashable
    statistic: Statistic


# ---------------------------------------------------------------------------------------------
# Percent agreement and Cohen's κ


def _check_pairs(pairs: Iterable[tuple]) -> list[tuple]:
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise AgreementError(f"Each pair needs exactly two ratings, got {pair!r}")
        if pair[0] is None or pair[1] is None:
            raise AgreementError("A pair has a missing rating; drop the item instead")
        checked.append((pair[0], pair[1]))
    return checked


def percent_agreement(pairs: Iterable[tuple]) -> Statistic:
    """Share of items on which both raters gave the same rating."""
    checked = _check_pairs(pairs)
    if not checked:
        return Statistic(None, 0)
    same = sum(1 for a, b in checked if a == b)
    return Statistic(same / len(checked), len(checked))


def _categories_for(values: Iterable, categories: Sequence | None) -> list:
    observed = set(values)
    if categories is None:
        try:
            return sorted(observed)
        except TypeError as exc:
            raise AgreementError("Ratings of mixed types cannot be ordered") from exc
    unknown = observed - set(categories)
    if unknown:
        raise AgreementError(f"Ratings outside the categories: {sorted(map(repr, unknown))}")
    if len(set(categories)) != len(categories):
        raise AgreementError("Categories repeat")
    return list(categories)


def cohen_kappa(
    pairs: Iterable[tuple], *, categories: Sequence | None = None, weights: Weights = None
) -> Statistic:
    """Cohen's κ for two raters; `weights="quadratic"` (or "linear") gives weighted κ for
    ordered categories, whose spacing is taken from their position in `categories`."""
    return kappa_from_table(Counter(_check_pairs(pairs)), categories=categories, weights=weights)


def kappa_from_table(
    table: Mapping[tuple, int], *, categories: Sequence | None = None, weights: Weights = None
) -> Statistic:
    """Cohen's κ from a contingency table {(rating by rater 1, rating by rater 2): count}."""
    if weights not in (None, "linear", "quadratic"):
        raise AgreementError(f"Unknown weights {weights!r}")
    n = sum(table.values())
    if n == 0:
        return Statistic(None, 0)
    cats = _categories_for([v for pair in table for v in pair], categories)
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    observed = Counter()
    row, col = Counter(), Counter()
    for (a, b), m in table.items():
        observed[(index[a], index[b])] += m
        row[index[a]] += m
        col[index[b]] += m

    def disagreement(i: int, j: int) -> float:
        if weights is None:
            return 0.0 if i == j else 1.0
        if weights == "linear":
            return abs(i - j)
        return (i - j) ** 2

    observed_d = sum(disagreement(i, j) * m for (i, j), m in observed.items()) / n
    expected_d = (
        sum(disagreement(i, j) * row[i] * col[j] for i in range(k) for j in range(k)) / n / n
    )
    if expected_d == 0:
        # Both raters used one and the same category throughout: κ is undefined.
        return Statistic(None, n)
    return Statistic(1.0 - observed_d / expected_d, n)


# ---------------------------------------------------------------------------------------------
# Krippendorff's α


def krippendorff_alpha(
    units: Iterable[Iterable], *, level: Level = "nominal", categories: Sequence | None = None
) -> Statistic:
    """Krippendorff's α from the values each unit received (`None` = missing; any number of
    raters per unit). Units with fewer than two values are not pairable and are left out;
    `n_items` counts the pairable units."""
    if level not in ("nominal", "ordinal", "interval"):
        raise AgreementError(f"Unknown level {level!r}")
    pairable = []
    for unit in units:
        values = [v for v in unit if v is not None]
        if len(values) >= 2:
            pairable.append(values)
    if not pairable:
        return Statistic(None, 0)
    coincidence: dict[tuple, float] = defaultdict(float)
    for values in pairable:
        _add_coincidences(coincidence, values)
    return alpha_from_coincidence(
        coincidence, n_units=len(pairable), level=level, categories=categories
    )


def _add_coincidences(coincidence: dict[tuple, float], values: Sequence) -> None:
    # Every ordered pair of values within a unit, weighted 1/(m_u - 1).
    m = len(values)
    for i, c in enumerate(values):
        for j, k in enumerate(values):
            if i != j:
                coincidence[(c, k)] += 1.0 / (m - 1)


def alpha_from_coincidence(
    coincidence: Mapping[tuple, float],
    *,
    n_units: int,
    level: Level = "nominal",
    categories: Sequence | None = None,
) -> Statistic:
    """Krippendorff's α from a coincidence matrix {(c, k): o_ck} over `n_units` units."""
    if level not in ("nominal", "ordinal", "interval"):
        raise AgreementError(f"Unknown level {level!r}")
    if not coincidence:
        return Statistic(None, n_units)
    cats = _categories_for([c for pair in coincidence for c in pair], categories)
    if level == "interval" and not all(isinstance(c, int | float) for c in cats):
        raise AgreementError("Interval α needs numeric ratings")
    marginal: dict = defaultdict(float)
    for (c, _k), o in coincidence.items():
        marginal[c] += o
    n = sum(marginal.values())

    if level == "nominal":

        def delta(c, k) -> float:
            return 0.0 if c == k else 1.0
    elif level == "interval":

        def delta(c, k) -> float:
            return float(c - k) ** 2
    else:
        position = {c: i for i, c in enumerate(cats)}
        ordered = [marginal.get(c, 0.0) for c in cats]

        def delta(c, k) -> float:
            lo, hi = sorted((position[c], position[k]))
            between = sum(ordered[lo : hi + 1])
            return (between - (ordered[lo] + ordered[hi]) / 2.0) ** 2

    observed_d = sum(o * delta(c, k) for (c, k), o in coincidence.items())
    expected_d = sum(marginal[c] * marginal[k] * delta(c, k) for c in marginal for k in marginal)
    if expected_d == 0:
        return Statistic(None, n_units)
    return Statistic(1.0 - (n - 1.0) * observed_d / expected_d, n_units)


# ---------------------------------------------------------------------------------------------
# ICC(2,1) with its confidence interval


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _nonzero(value: float) -> float:
    return value if abs(value) > 1e-300 else 1e-300


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    # The continued fraction for the incomplete beta function, evaluated with the modified
    # Lentz method; it converges fast for x < (a + 1) / (a + b + 2).
    c, d = 1.0, 1.0 / _nonzero(1.0 - (a + b) * x / (a + 1.0))
    result = d
    for m in range(1, 500):
        m2 = 2 * m
        step = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 / _nonzero(1.0 + step * d)
        c = _nonzero(1.0 + step / c)
        result *= d * c
        step = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 / _nonzero(1.0 + step * d)
        c = _nonzero(1.0 + step / c)
        delta = d * c
        result *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return result


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if not 0.0 <= x <= 1.0:
        raise AgreementError("x must lie in [0, 1]")
    if x in (0.0, 1.0):
        return x
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def f_cdf(x: float, d1: float, d2: float) -> float:
    if x <= 0:
        return 0.0
    return regularized_beta(d1 * x / (d1 * x + d2), d1 / 2.0, d2 / 2.0)


def f_quantile(p: float, d1: float, d2: float) -> float:
    """The p-quantile of the F distribution (non-integer degrees of freedom allowed)."""
    if not 0.0 < p < 1.0 or d1 <= 0 or d2 <= 0:
        raise AgreementError("F quantile needs 0 < p < 1 and positive degrees of freedom")
    lo, hi = 0.0, 1.0
    while f_cdf(hi, d1, d2) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if f_cdf(mid, d1, d2) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def icc_2_1(rows: Iterable[Sequence[float]]) -> Statistic:
    """ICC(2,1): two-way random effects, absolute agreement, single rater (Shrout & Fleiss
    1979; McGraw & Wong's ICC(A,1)), with the McGraw & Wong confidence interval.

    `rows` is one row per item with one score per rater, every rater on every item; an item
    some rater skipped must be dropped by the caller (see `ratings_complete_rows`)."""
    data = [[float(v) for v in row] for row in rows]
    n = len(data)
    if n == 0:
        return Statistic(None, 0)
    k = len(data[0])
    if any(len(row) != k for row in data):
        raise AgreementError("Every item needs a score from every rater")
    if k < 2 or n < 2:
        return Statistic(None, n)
    grand = sum(map(sum, data)) / (n * k)
    row_means = [sum(row) / k for row in data]
    col_means = [sum(row[j] for row in data) / n for j in range(k)]
    ss_rows = k * sum((m - grand) ** 2 for m in row_means)
    ss_cols = n * sum((m - grand) ** 2 for m in col_means)
    ss_total = sum((v - grand) ** 2 for row in data for v in row)
    ss_error = ss_total - ss_rows - ss_cols
    return icc_from_sums(n=n, k=k, ss_rows=ss_rows, ss_cols=ss_cols, ss_error=ss_error)


def _icc_interval(
    *, n: int, k: int, msr: float, msc: float, mse: float, icc: float, confidence: float
) -> tuple[float | None, float | None]:
    """McGraw & Wong's (1996) interval for ICC(A,1), with Satterthwaite's degrees of freedom.
    Degenerate data (no error variance, an ICC of 1, or terms that vanish, as they can for a
    negative ICC) leave the interval undefined rather than raising."""
    if mse <= 1e-12 or icc >= 1.0 - 1e-12:
        return None, None
    alpha = 1.0 - confidence
    a = k * icc / (n * (1.0 - icc))
    b = 1.0 + k * icc * (n - 1) / (n * (1.0 - icc))
    spread = k * msc + (k * n - k - n) * mse
    try:
        dof = (a * msc + b * mse) ** 2 / (
            (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
        )
        if not (dof > 1e-9 and math.isfinite(dof)):
            return None, None
        f_low = f_quantile(1.0 - alpha / 2.0, n - 1, dof)
        f_high = f_quantile(1.0 - alpha / 2.0, dof, n - 1)
        low = n * (msr - f_low * mse) / (f_low * spread + n * msr)
        high = n * (f_high * msr - mse) / (spread + n * f_high * msr)
    except ZeroDivisionError:
        return None, None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None, None
    return low, high


def _icc_from_mean_squares(
    *, n: int, k: int, msr: float, msc: float, mse: float, confidence: float = 0.95
) -> Statistic:
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    # Sums of squares accumulated in a stream carry rounding error; below this, every score is
    # the same and the ICC is undefined rather than a ratio of two rounding errors.
    if denominator <= 1e-9:
        return Statistic(None, n)
    icc = (msr - mse) / denominator

    low, high = _icc_interval(n=n, k=k, msr=msr, msc=msc, mse=mse, icc=icc, confidence=confidence)
    return Statistic(icc, n, low, high)


# ---------------------------------------------------------------------------------------------
# Many raters: per pair and overall, accumulated item by item


Ratings = Mapping[Hashable, Mapping[Hashable, object]]
Kind = Literal["binary", "nominal", "ordinal"]


class Accumulator:
    """Agreement statistics for many raters, fed one item at a time with `add({rater: value})`.

    Only counts are kept (a contingency table per pair of raters, a coincidence matrix, running
    sums for the ICC), so memory does not grow with the number of items: a release of a million
    items is summarized in one streaming pass. `summary()` gives the same values as the batch
    functions above on the same data (the tests check this)."""

    def __init__(self, *, kind: Kind, categories: Sequence | None = None, icc_raters: int = 2):
        if kind not in ("binary", "nominal", "ordinal"):
            raise AgreementError(f"Unknown kind {kind!r}")
        self.kind = kind
        self.categories = tuple(categories) if categories is not None else None
        self._allowed = frozenset(self.categories) if categories is not None else None
        self.icc_raters = icc_raters
        self.tables: dict[tuple, Counter] = defaultdict(Counter)
        self.coincidence: dict[tuple, float] = defaultdict(float)
        self.units = 0
        self.agreeing_pairs = 0
        self.all_pairs = 0
        # ICC(2,1) running sums over complete rows of `icc_raters` columns.
        self.icc_rows = 0
        self.icc_total = 0.0
        self.icc_squares = 0.0
        self.icc_row_squares = 0.0
        self.icc_columns = [0.0] * icc_raters

    def add(self, by_rater: Mapping[Hashable, object]) -> None:
        present = [(r, v) for r, v in by_rater.items() if v is not None]
        if len(present) < 2:
            return
        try:
            present.sort(key=lambda rv: rv[0])
        except TypeError:
            present.sort(key=lambda rv: repr(rv[0]))
        if self._allowed is not None:
            for _r, v in present:
                if v not in self._allowed:
                    raise AgreementError(f"Ratings outside the categories: [{v!r}]")
        self.units += 1
        values = [v for _, v in present]
        if len(values) == 2:
            # The common case (two experts per item), without the general loops.
            (ra, va), (rb, vb) = present
            self.coincidence[(va, vb)] += 1.0
            self.coincidence[(vb, va)] += 1.0
            self.tables[(ra, rb)][(va, vb)] += 1
            self.all_pairs += 1
            self.agreeing_pairs += va == vb
        else:
            _add_coincidences(self.coincidence, values)
            for (ra, va), (rb, vb) in combinations(present, 2):
                self.tables[(ra, rb)][(va, vb)] += 1
                self.all_pairs += 1
                self.agreeing_pairs += va == vb
        if self.kind == "ordinal" and len(values) >= self.icc_raters:
            row = [float(v) for v in values[: self.icc_raters]]
            self.icc_rows += 1
            total = sum(row)
            self.icc_total += total
            self.icc_squares += sum(v * v for v in row)
            self.icc_row_squares += total * total
            for j, v in enumerate(row):
                self.icc_columns[j] += v

    def _icc(self) -> Statistic:
        n, k = self.icc_rows, self.icc_raters
        if n < 2:
            return Statistic(None, n)
        correction = self.icc_total**2 / (n * k)
        ss_rows = self.icc_row_squares / k - correction
        ss_cols = sum(c * c for c in self.icc_columns) / n - correction
        ss_total = self.icc_squares - correction
        return icc_from_sums(
            n=n, k=k, ss_rows=ss_rows, ss_cols=ss_cols, ss_error=ss_total - ss_rows - ss_cols
        )

    def pairs(self) -> list[dict]:
        weights = "quadratic" if self.kind == "ordinal" else None
        result = []
        for (ra, rb), table in sorted(self.tables.items(), key=lambda kv: repr(kv[0])):
            n = sum(table.values())
            same = sum(m for (a, b), m in table.items() if a == b)
            result.append(
                {
                    "rater_a": ra,
                    "rater_b": rb,
                    "kappa": kappa_from_table(table, categories=self.categories, weights=weights),
                    "percent_agreement": Statistic(same / n, n),
                }
            )
        return result

    def summary(self) -> dict:
        pairs = self.pairs()
        defined = [p["kappa"] for p in pairs if p["kappa"].value is not None]
        light = Statistic(
            sum(s.value for s in defined) / len(defined) if defined else None,
            sum(s.n_items for s in defined),
        )
        percent = Statistic(
            self.agreeing_pairs / self.all_pairs if self.all_pairs else None, self.units
        )
        level = "ordinal" if self.kind == "ordinal" else "nominal"
        alpha = alpha_from_coincidence(
            self.coincidence, n_units=self.units, level=level, categories=self.categories
        )
        overall = {"percent_agreement": percent}
        if self.kind == "ordinal":
            overall |= {
                "weighted_kappa_mean": light,
                "alpha_ordinal": alpha,
                "icc_2_1": self._icc(),
            }
        else:
            overall |= {"kappa_mean": light, "alpha_nominal": alpha}
        return {"overall": overall, "pairs": pairs}


def icc_from_sums(*, n: int, k: int, ss_rows: float, ss_cols: float, ss_error: float) -> Statistic:
    return _icc_from_mean_squares(
        n=n,
        k=k,
        msr=ss_rows / (n - 1),
        msc=ss_cols / (k - 1),
        mse=ss_error / ((n - 1) * (k - 1)),
    )


def summarize(ratings: Ratings, *, kind: Kind, categories: Sequence | None = None) -> dict:
    """Everything the dashboard and the dataset card show for one judgement, per pair of
    raters and overall, each with its number of items. Items go in a fixed order so the ICC's
    column assignment does not depend on dict order."""
    acc = Accumulator(kind=kind, categories=categories)
    for _item, by_rater in sorted(ratings.items(), key=lambda kv: repr(kv[0])):
        acc.add(by_rater)
    return acc.summary()


def summary_as_dict(summary: dict) -> dict:
    """The summary with `Statistic`s as plain dicts (for JSON fields and templates)."""
    return {
        "overall": {name: stat.as_dict() for name, stat in summary["overall"].items()},
        "pairs": [
            {
                "rater_a": str(p["rater_a"]),
                "rater_b": str(p["rater_b"]),
                "kappa": p["kappa"].as_dict(),
                "percent_agreement": p["percent_agreement"].as_dict(),
            }
            for p in summary["pairs"]
        ],
    }
