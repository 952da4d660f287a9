"""Regenerate `crowdkit_ds_fixture.json`: fixed label sets and crowd-kit's Dawid–Skene output on
them. Run with a Python that has crowd-kit installed (it is not a dependency of MedCoT: it pulls
in transformers and nltk), e.g.

    python -m venv /tmp/ck && /tmp/ck/bin/pip install crowd-kit
    /tmp/ck/bin/python tests/review/quality/make_crowdkit_fixture.py

The data sets are drawn from a seeded generator, so the file only changes when crowd-kit does.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from crowdkit import __version__ as crowdkit_version
from crowdkit.aggregation import DawidSkene

HERE = Path(__file__).parent


def draw(seed: int, n_items: int, n_workers: int, per_item: int, known_share: float):
    rng = np.random.default_rng(seed)
    truth = (rng.random(n_items) < 0.8).astype(int)
    sens = rng.uniform(0.6, 0.98, n_workers)
    spec = rng.uniform(0.6, 0.98, n_workers)
    rows = []
    for task in range(n_items):
        for worker in rng.choice(n_workers, size=per_item, replace=False):
            p_one = sens[worker] if truth[task] else 1 - spec[worker]
            rows.append((task, int(worker), int(rng.random() < p_one)))
    known = {
        int(task): int(truth[task]) for task in np.flatnonzero(rng.random(n_items) < known_share)
    }
    return rows, known


def main() -> None:
    sets = []
    for name, seed, n_items, n_workers, per_item, known_share in [
        ("small-3-per-item", 1, 60, 5, 3, 0.0),
        ("sparse-2-per-item", 2, 400, 12, 2, 0.0),
        ("with-controls", 3, 300, 8, 2, 0.05),
        ("single-and-double", 4, 500, 20, 1, 0.05),
    ]:
        rows, known = draw(seed, n_items, n_workers, per_item, known_share)
        if name == "single-and-double":
            # Mostly one label per item, a 10 % sample with a second one, as in MedCoT.
            rng = np.random.default_rng(40)
            extra = []
            for task, worker, _label in rows:
                if rng.random() < 0.1:
                    other = int((worker + 1 + rng.integers(n_workers - 1)) % n_workers)
                    extra.append((task, other, int(rng.random() < 0.8)))
            rows += extra
        df = pd.DataFrame(rows, columns=["task", "worker", "label"])
        ds = DawidSkene(n_iter=100, tol=1e-5)
        truth = pd.Series(known, dtype=int) if known else None
        probas = ds.fit_predict_proba(df, true_labels=truth)
        errors = ds.errors_
        sets.append(
            {
                "name": name,
                "rows": rows,
                "known": {str(k): v for k, v in known.items()},
                "crowdkit": {
                    "posteriors": {
                        str(task): [float(probas.loc[task].get(c, 0.0)) for c in (0, 1)]
                        for task in probas.index
                    },
                    "confusion": {
                        f"{worker}:{label}": [
                            float(errors.loc[(worker, label)].get(c, 0.0)) for c in (0, 1)
                        ]
                        for worker, label in errors.index
                    },
                    "iterations": len(ds.loss_history_),
                },
            }
        )
    out = {"crowdkit_version": crowdkit_version, "n_iter": 100, "tol": 1e-5, "sets": sets}
    (HERE / "crowdkit_ds_fixture.json").write_text(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
