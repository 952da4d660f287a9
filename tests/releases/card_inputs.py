"""Fixed inputs for the dataset card: what a release build passes to `render_card`, in the
shapes it has after a round trip through PostgreSQL's jsonb. `tests/releases/cards/*.md` hold
the bytes the card had when it was built from Python string lists; the template must keep them."""

from review.releases.writers import DIMENSIONS


def _stat(value, low=None, high=None, n=12):
    return {"value": value, "ci_low": low, "ci_high": high, "n_items": n}


def _summary(pairs=2, **stats):
    return {"overall": stats, "pairs": [{"raters": ["e1", "e2"]}] * pairs}


FUNNEL = {
    "constructed": 36_210,
    "seeds": 12_070,
    "confirmed_first_pass": 30_125,
    "escalated": 1_928,
    "escalated_share": 0.064,
    "finalized": 27_000,
    "unrevised": 20_250,
    "unrevised_share": 0.7,
    "modified": 6_750,
    "modified_share": 0.2333,
    "discarded": 2_000,
    "discarded_share": None,
    "in_progress": 1_125,
}

AGREEMENT = {
    # jsonb reorders keys: the card must not follow the dict's order.
    "consensus_phrasing": _summary(
        icc_2_1=_stat(0.5), percent_agreement=_stat(0.91, 0.88, 0.94), kappa_mean=_stat(None)
    ),
    "consensus_key": _summary(pairs=1, alpha_nominal=_stat(0.77, 0.7, 0.83, n=1_234)),
    "panel_decision": _summary(pairs=0),
    "rubric": {
        d: _summary(
            weighted_kappa_mean=_stat(0.61, 0.5, 0.7), alpha_ordinal=_stat(0.6), extra=_stat(1)
        )
        for d in DIMENSIONS
    },
}

RELEASE = {
    "total": 27_000,
    "escalated": 1_700,
    "rubric": {
        d: {"counts": [i, 10 * i, 100 + i], "n": 111 + 11 * i, "mean": None if i == 0 else 1.5}
        for i, d in enumerate(DIMENSIONS)
    },
    "language": [("en", 20_000), ("zh", 7_000)],
    "question_type": [("single", 27_000)],
    "kind": [("seed", 9_000), ("expanded", 18_000)],
    "revision_status": [("unrevised", 20_250), ("", 6_750)],
    "first_pass_result": [("a|b <c>", 3)],
    "specialty": [("Cardiology", 1)],
    "cognitive_level": [],
    "difficulty": [],
    "consensus_size": [],
}

CASES = {
    "with_diff": dict(
        project_name="Cardio | CoT\nset",
        project_description="  Questions from the ward.  ",
        version="v2.0",
        license="cc-by-4.0",
        notes="Second release.",
        filters={"specialties": ["Cardiology", "Neurology"], "languages": [], "kind": ["seed"]},
        stats={
            "release": RELEASE,
            "funnel": FUNNEL,
            "agreement": AGREEMENT,
            "diff": {
                "added": 1_000,
                "removed": 5,
                "changed": 12,
                "fields": {"cot": 10, "answer": 2},
            },
        },
        previous_version="v1.0",
    ),
    "previous_gone": dict(
        project_name="MedCoT",
        project_description="",
        version="v3",
        license="other",
        notes="   ",
        filters={},
        stats={
            "release": {**RELEASE, "language": []},
            "funnel": {**FUNNEL, "constructed": 0},
            "agreement": AGREEMENT,
        },
        previous_version="v2",
    ),
    "first": dict(
        project_name="Tiny",
        project_description="One.",
        version="v1",
        license="cc-by-nc-4.0",
        notes="",
        filters={"languages": ["en"]},
        stats={
            "release": {**RELEASE, "total": 999},
            "funnel": FUNNEL,
            "agreement": AGREEMENT,
            "diff": {"added": 0, "removed": 0, "changed": 0, "fields": {}},
        },
        previous_version=None,
    ),
}
