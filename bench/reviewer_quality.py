"""Reviewer quality: does Dawid–Skene find the reliable reviewers, and how long is a refit?

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/medcot_bench_quality
    .venv/bin/python bench/reviewer_quality.py

The database named in DATABASE_URL is DROPPED and created afresh for the refit timing (pass
--keep to reuse it, --no-db to run the simulation only).

1. Simulation (numpy, no database): 20 reviewers with known sensitivity and specificity drawn
   from 0.6–0.98, 10,000 items (90 % valid, as in the paper's first pass), each reviewed by
   one reviewer, 5 % by a second one, and one queue item in 20 a control (half of them valid,
   half not, as an admin would pick them from approved and discarded items). Prints the
   correlation between each reviewer's estimated and true accuracy (target >= 0.9) and the
   error rate of the aggregated verdicts against the truth next to that of the single
   reviewer's verdict.
2. Refit on PostgreSQL: 36,210 items with a first-pass verdict each (5 % with two), two
   consensus votes each, and the control answers; one full refit through `quality_refit`, the
   function the periodic task calls (target < 10 s), then an incremental one after 100 more
   verdicts. Prints the load average, since the machine is shared.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")


def simulate(*, seed: int, n_items: int, n_reviewers: int, double: float, control_every: int):
    """Labels as (task, worker, label) arrays: real items first, then control tasks."""
    rng = np.random.default_rng(seed)
    sens = rng.uniform(0.6, 0.98, n_reviewers)
    spec = rng.uniform(0.6, 0.98, n_reviewers)
    truth = (rng.random(n_items) < 0.9).astype(int)
    first = rng.integers(n_reviewers, size=n_items)
    twice = np.flatnonzero(rng.random(n_items) < double)
    second = (first[twice] + 1 + rng.integers(n_reviewers - 1, size=twice.size)) % n_reviewers
    items = np.concatenate([np.arange(n_items), twice])
    workers = np.concatenate([first, second])
    # One queue item in `control_every` is a control: each reviewer answers controls in
    # proportion to their volume, from a pool where half are valid.
    per_reviewer = np.bincount(workers, minlength=n_reviewers) // (control_every - 1)
    n_controls = 400
    control_truth = (np.arange(n_controls) % 2).astype(int)
    c_items, c_workers = [], []
    for w in range(n_reviewers):
        chosen = rng.choice(n_controls, size=min(n_controls, per_reviewer[w]), replace=False)
        c_items.append(n_items + chosen)
        c_workers.append(np.full(chosen.size, w))
    items = np.concatenate([items, *c_items])
    workers = np.concatenate([workers, *c_workers])
    all_truth = np.concatenate([truth, control_truth])
    p_one = np.where(all_truth[items] == 1, sens[workers], 1 - spec[workers])
    labels = (rng.random(items.size) < p_one).astype(int)
    known = {n_items + c: int(control_truth[c]) for c in range(n_controls)}
    return {
        "items": items,
        "workers": workers,
        "labels": labels,
        "known": known,
        "truth": truth,
        "sens": sens,
        "spec": spec,
        "n_items": n_items,
        "n_tasks": n_items + n_controls,
        "n_control_answers": int(sum(c.size for c in c_items)),
        "n_double": int(twice.size),
    }


def part_simulation(args) -> None:
    from review.quality.aggregation import FIT_OPTIONS, dawid_skene, sensitivity_specificity

    sim = simulate(
        seed=args.seed,
        n_items=args.items,
        n_reviewers=args.reviewers,
        double=args.double,
        control_every=args.control_every,
    )
    reference = dawid_skene(
        sim["items"],
        sim["workers"],
        sim["labels"],
        n_items=sim["n_tasks"],
        n_workers=args.reviewers,
        known=sim["known"],
    )
    started = time.perf_counter()
    result = dawid_skene(
        sim["items"],
        sim["workers"],
        sim["labels"],
        n_items=sim["n_tasks"],
        n_workers=args.reviewers,
        known=sim["known"],
        **FIT_OPTIONS,
    )
    fit_s = time.perf_counter() - started
    est_sens, est_spec = sensitivity_specificity(result.confusion)
    prevalence = sim["truth"].mean()
    true_acc = prevalence * sim["sens"] + (1 - prevalence) * sim["spec"]
    est_prev = result.priors[1]
    est_acc = est_prev * est_sens + (1 - est_prev) * est_spec
    corr = float(np.corrcoef(true_acc, est_acc)[0, 1])
    ref_sens, ref_spec = sensitivity_specificity(reference.confusion)
    ref_prev = reference.priors[1]
    ref_corr = float(np.corrcoef(true_acc, ref_prev * ref_sens + (1 - ref_prev) * ref_spec)[0, 1])
    corr_sens = float(np.corrcoef(sim["sens"], est_sens)[0, 1])
    corr_spec = float(np.corrcoef(sim["spec"], est_spec)[0, 1])
    n = sim["n_items"]
    truth = sim["truth"]
    aggregated = result.posteriors[:n].argmax(axis=1)
    # The single reviewer's verdict: the first label given on each real item.
    single = sim["labels"][:n]
    double_idx = sim["items"][n : n + sim["n_double"]]
    print(f"  options: {FIT_OPTIONS}; estimated prevalence {est_prev:.3f}, true {prevalence:.3f}")
    print(
        f"simulation: {args.reviewers} reviewers, {n:,} items, {sim['n_double']:,} reviewed "
        f"twice, {sim['n_control_answers']:,} control answers; EM {result.iterations} "
        f"iterations in {fit_s * 1000:.0f} ms"
    )
    print(
        f"  correlation estimated vs true reviewer accuracy: {corr:.3f} (target >= 0.9); "
        f"sensitivity {corr_sens:.3f}, specificity {corr_spec:.3f}"
    )
    print(
        f"  (crowd-kit's stopping rule and prior on the same labels: correlation "
        f"{ref_corr:.3f} after {reference.iterations} iterations, aggregated error "
        f"{np.mean(reference.labels[:n] != truth):.4f})"
    )
    print(
        f"  error rate vs truth: aggregated {np.mean(aggregated != truth):.4f}, "
        f"single reviewer {np.mean(single != truth):.4f}; on the double-reviewed items "
        f"aggregated {np.mean(aggregated[double_idx] != truth[double_idx]):.4f}, "
        f"single {np.mean(single[double_idx] != truth[double_idx]):.4f}"
    )
    posteriors = result.posteriors[:n, 1]
    confident = np.maximum(posteriors, 1 - posteriors) >= 0.95
    print(
        f"  {confident.mean():.1%} of verdicts at confidence >= 0.95, error among them "
        f"{np.mean(aggregated[confident] != truth[confident]):.4f}"
    )


def recreate_database(url: str) -> None:
    import psycopg
    from django.conf import settings
    from django.db import connections

    name = settings.DATABASES["default"]["NAME"]
    connections.close_all()
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def fill(*, n_items: int, seed: int):
    """36,210 items with their verdicts, written in bulk (the refit, not the fill, is timed)."""
    from django.utils import timezone

    from medcot.lifecycle import Status
    from medcot.models import Item
    from medcot.roles import EXPERT, REVIEWER
    from medcot.services import project_create
    from review.models import ConsensusVote, FirstPassReview
    from review.quality.models import ControlAnswer, ControlItem
    from review.services import person_create
    from tests.claim_queue import queue_fill

    rng = np.random.default_rng(seed)
    tag = time.time_ns()
    project = project_create(name=f"Quality bench {tag}")
    ids = queue_fill(project=project, n=n_items + 200, specialties=["Cardiology"], prefix="rq")
    versions = dict(Item.objects.filter(pk__in=ids).values_list("pk", "current_version_id"))
    reviewers = [
        person_create(username=f"rq-r{tag}-{n}", password="x", roles=[REVIEWER])  # noqa: S106
        for n in range(20)
    ]
    experts = [
        person_create(username=f"rq-e{tag}-{n}", password="x", roles=[EXPERT])  # noqa: S106
        for n in range(8)
    ]
    sens = rng.uniform(0.6, 0.98, 20)
    real, control_ids = ids[:n_items], ids[n_items:]
    truth = rng.random(n_items) < 0.9
    now = timezone.now()

    def verdict(w: int, valid: bool) -> bool:
        return bool(rng.random() < (sens[w] if valid else 1 - sens[w]))

    reviews = []
    for i, item_id in enumerate(real):
        people = [int(rng.integers(20))]
        if rng.random() < 0.05:
            people.append((people[0] + 1 + int(rng.integers(19))) % 20)
        for w in people:
            ok = verdict(w, truth[i])
            reviews.append(
                FirstPassReview(
                    item_id=item_id,
                    version_id=versions[item_id],
                    reviewer=reviewers[w],
                    relevance=True,
                    correctness=ok,
                    sufficiency=True,
                    outcome="pass" if ok else "discarded",
                    reason="" if ok else "bench",
                    state="applied",
                    effective_at=now,
                    applied_at=now,
                )
            )
    FirstPassReview.objects.bulk_create(reviews, batch_size=5000)
    votes = []
    for i, item_id in enumerate(real):
        for e in rng.choice(8, size=2, replace=False):
            agree = rng.random() < (0.95 if truth[i] else 0.1)
            votes.append(
                ConsensusVote(
                    item_id=item_id,
                    version_id=versions[item_id],
                    expert=experts[int(e)],
                    answer="A" if agree else "B",
                    approve_phrasing=True,
                )
            )
    ConsensusVote.objects.bulk_create(votes, batch_size=5000)
    Item.objects.filter(pk__in=control_ids).update(status=Status.FIRST_REVIEW)
    controls = ControlItem.objects.bulk_create(
        [
            ControlItem(
                project=project,
                item_id=item_id,
                stage="first_review",
                expected_valid=bool(n % 2),
                expected_answer="A",
            )
            for n, item_id in enumerate(control_ids)
        ]
    )
    answers = []
    for w, person in enumerate(reviewers):
        for c in rng.choice(len(controls), size=90, replace=False):
            control = controls[int(c)]
            ok = verdict(w, control.expected_valid)
            answers.append(
                ControlAnswer(
                    control=control,
                    reviewer=person,
                    stage="first_review",
                    given_valid=ok,
                    correct=ok == control.expected_valid,
                )
            )
    ControlAnswer.objects.bulk_create(answers, batch_size=5000)
    print(
        f"filled {n_items:,} items: {len(reviews):,} first-pass verdicts, {len(votes):,} "
        f"consensus votes, {len(answers):,} control answers"
    )
    return project, real, versions, reviewers


def part_refit(args) -> None:
    import django

    django.setup()
    if not args.keep:
        recreate_database(os.environ["DATABASE_URL"])
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from review.models import FirstPassReview
    from review.quality.models import VerdictPosterior
    from review.quality.refit import quality_refit, verdict_labels

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    project, real, versions, reviewers = fill(n_items=args.refit_items, seed=args.seed)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  fill took {time.perf_counter() - started:.1f} s")

    t0 = time.perf_counter()
    labels = verdict_labels(project_id=project.pk)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = quality_refit(project_id=project.pk, force=True, warm=False)
    full_s = time.perf_counter() - t0
    print(
        f"refit (cold, first write of every posterior): {full_s:.2f} s for {fit.n_items:,} "
        f"versions, {fit.n_labels:,} labels, {fit.n_workers} people, {fit.iterations} EM "
        f"iterations (reading the labels alone: {read_s:.2f} s, {labels.labels.size:,} rows); "
        f"target < 10 s"
    )
    t0 = time.perf_counter()
    fit = quality_refit(project_id=project.pk, force=True, warm=False)
    print(
        f"refit (cold, posteriors already stored): {time.perf_counter() - t0:.2f} s, "
        f"{fit.iterations} iterations"
    )
    # 100 more verdicts: the periodic task's incremental case (watermark moved, warm start).
    now = timezone.now()
    extra = real[:100]
    FirstPassReview.objects.bulk_create(
        [
            FirstPassReview(
                item_id=item_id,
                version_id=versions[item_id],
                reviewer=reviewers[(n + 7) % 20],
                relevance=True,
                correctness=True,
                sufficiency=True,
                outcome="pass",
                state="applied",
                effective_at=now,
                applied_at=now,
            )
            for n, item_id in enumerate(extra)
        ],
        ignore_conflicts=True,
    )
    t0 = time.perf_counter()
    fit = quality_refit(project_id=project.pk)
    print(
        f"refit (incremental after 100 new verdicts, warm start): "
        f"{time.perf_counter() - t0:.2f} s, {fit.iterations} iterations"
    )
    t0 = time.perf_counter()
    skipped = quality_refit(project_id=project.pk)
    print(
        f"refit with nothing new: {time.perf_counter() - t0:.3f} s "
        f"({'skipped' if skipped is None else 'ran'})"
    )
    print(f"  posteriors stored: {VerdictPosterior.objects.count():,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--double", type=float, default=0.05)
    parser.add_argument("--control-every", type=int, default=20)
    parser.add_argument("--refit-items", type=int, default=36_210)
    parser.add_argument("--keep", action="store_true", help="do not recreate the database")
    parser.add_argument("--no-db", action="store_true", help="run the simulation only")
    args = parser.parse_args()

    part_simulation(args)
    if not args.no_db:
        if not os.getenv("DATABASE_URL", "").startswith("postgres"):
            sys.exit("Set DATABASE_URL to a PostgreSQL database for the refit timing.")
        part_refit(args)
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
