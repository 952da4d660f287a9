"""Judge routing: how much sooner reviewers meet the defective items when the queue is ordered
by a machine judge's risk instead of arrival order.

A simulated project of N items (10,000 by default), a share of them defective (8 %). Each
item has a true medical-correctness score: 0 for a defective item, 2 for a sound one (1 for
15 % of the sound ones, which are weaker but not wrong). A judge reports the true score with
probability `a` and otherwise a score drawn uniformly from 0-2; `a` is found by bisection so
that the judge's quadratic weighted κ against the truth is the target (0.3, 0.5, 0.7). Every
item costs a reviewer the same time, so the first 20 % of reviewer time is the first 20 % of
the queue. Judge order: highest risk (2 - judge score) first, ties in arrival order.

Prints, per judge, the κ reached and the share of defective items found within the budget,
judge-ordered against arrival order, as mean ± sd over repetitions with fresh projects.

    .venv/bin/python bench/judge_routing.py
    .venv/bin/python bench/judge_routing.py --items 10000 --defective 0.08 --budget 0.2 \
        --kappa 0.3 0.5 0.7 --repeats 20 --seed 1

Pure Python, no database: the κ is review.judge.calibration's, the one the calibration page
shows.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from review.judge.calibration import weighted_kappa_interval

WEAK_SHARE = 0.15


def project(rng: random.Random, n: int, defective: float) -> list[int]:
    """True scores in arrival order."""
    truth = []
    for _ in range(n):
        if rng.random() < defective:
            truth.append(0)
        else:
            truth.append(1 if rng.random() < WEAK_SHARE else 2)
    return truth


def judge(rng: random.Random, truth: list[int], agreement: float) -> list[int]:
    return [t if rng.random() < agreement else rng.randrange(3) for t in truth]


def kappa_of(truth: list[int], scores: list[int]) -> float:
    return weighted_kappa_interval(list(zip(scores, truth, strict=True))).value or 0.0


def agreement_for(kappa: float, *, n: int, defective: float, seed: int) -> float:
    """The chance of reporting the truth that gives this κ (bisection on one large sample)."""
    rng = random.Random(seed)
    truth = project(rng, max(n, 50_000), defective)
    draws = [(rng.random(), rng.randrange(3)) for _ in truth]
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        scores = [t if u < mid else r for t, (u, r) in zip(truth, draws, strict=True)]
        if kappa_of(truth, scores) < kappa:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def found_within(order: list[int], truth: list[int], budget: int) -> float:
    total = sum(1 for t in truth if t == 0)
    found = sum(1 for i in order[:budget] if truth[i] == 0)
    return found / total if total else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--defective", type=float, default=0.08)
    parser.add_argument("--budget", type=float, default=0.2, help="share of reviewer time")
    parser.add_argument("--kappa", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args(argv)
    if not (0 < opts.defective < 1 and 0 < opts.budget <= 1 and opts.items >= 10):
        parser.error("--defective and --budget are shares in (0, 1]; --items at least 10")
    budget = int(opts.items * opts.budget)
    print(
        f"{opts.items} items, {opts.defective:.0%} defective, first {opts.budget:.0%} of reviewer "
        f"time ({budget} items), {opts.repeats} projects per judge"
    )
    print(f"{'target κ':>8} {'κ reached':>10} {'a':>6} {'judge-ordered':>16} {'arrival order':>16}")
    for target in opts.kappa:
        a = agreement_for(target, n=opts.items, defective=opts.defective, seed=opts.seed)
        kappas, ordered, arrival = [], [], []
        for r in range(opts.repeats):
            rng = random.Random(f"{opts.seed}:{target}:{r}")
            truth = project(rng, opts.items, opts.defective)
            scores = judge(rng, truth, a)
            kappas.append(kappa_of(truth, scores))
            by_risk = sorted(range(opts.items), key=lambda i: (scores[i], i))
            ordered.append(found_within(by_risk, truth, budget))
            arrival.append(found_within(list(range(opts.items)), truth, budget))

        def show(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):6.1%} ± {sd:4.1%}"

        print(
            f"{target:>8.2f} {statistics.mean(kappas):>10.3f} {a:>6.3f} "
            f"{show(ordered):>16} {show(arrival):>16}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
