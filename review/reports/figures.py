"""The charts of the dashboard and of the dataset card, drawn from the same numbers.

The dashboard draws them in the reader's language; the card draws them in English inside
`translation.override("en")`, so a rebuilt card does not depend on who clicked "build"."""

from __future__ import annotations

from django.utils.translation import gettext as _

from medcot.i18n import specialty_label
from medcot.models import CognitiveLevel, Difficulty, Language, QuestionType, RevisionStatus
from review.models import RubricDimension
from review.reports.charts import Chart, bar_chart, funnel, hbar_chart, stacked_bar

SPECIALTY_LIMIT = 25


def _label(choices, value: str) -> str:
    if not value:
        return _("Unknown")
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def funnel_chart(f: dict) -> Chart:
    return funnel(
        title=_("Funnel (paper §3.2)"),
        steps=[
            (_("Constructed"), f["constructed"]),
            (_("Confirmed by first pass"), f["confirmed_first_pass"]),
            (_("Five-strike escalations"), f["escalated"]),
            (_("Finalized"), f["finalized"]),
        ],
        empty_message=_("No items yet."),
    )


def outcome_chart(f: dict) -> Chart:
    return stacked_bar(
        title=_("Final outcome of decided items"),
        categories=[_("Decided items")],
        series=[
            (_("Unrevised"), [f["unrevised"]]),
            (_("Modified"), [f["modified"]]),
            (_("Discarded"), [f["discarded"]]),
        ],
        empty_message=_("No item has been approved or discarded yet."),
    )


def specialty_chart(pairs: list, *, title: str | None = None) -> Chart:
    pairs = [(specialty_label(name) or _("Unknown"), n) for name, n in pairs]
    pairs.sort(key=lambda p: (-p[1], p[0]))
    if len(pairs) > SPECIALTY_LIMIT:
        rest = pairs[SPECIALTY_LIMIT - 1 :]
        other = _("Other (%(n)d specialties)") % {"n": len(rest)}
        pairs = [*pairs[: SPECIALTY_LIMIT - 1], (other, sum(n for _name, n in rest))]
    return hbar_chart(
        title=title or _("Items by specialty (Figure 3)"),
        data=pairs,
        empty_message=_("No items yet."),
    )


def _ordered(pairs: list, choices) -> list[tuple[str, int]]:
    counts = dict(pairs)
    order = [c.value for c in choices]
    ordered = [(_label(choices, v), counts.get(v, 0)) for v in order if v in counts]
    ordered += [(v, n) for v, n in pairs if v not in order]
    return ordered


def _items_bar_chart(title: str, data: list[tuple[str, int]], width: int) -> Chart:
    return bar_chart(title=title, data=data, width=width, empty_message=_("No items yet."))


def cognitive_chart(pairs: list) -> Chart:
    return _items_bar_chart(_("Cognitive level"), _ordered(pairs, CognitiveLevel), 420)


def difficulty_chart(pairs: list) -> Chart:
    return _items_bar_chart(_("Difficulty"), _ordered(pairs, Difficulty), 420)


def language_chart(pairs: list) -> Chart:
    return _items_bar_chart(_("Language"), _ordered(pairs, Language), 300)


def question_type_chart(pairs: list) -> Chart:
    return _items_bar_chart(_("Question type"), [(str(v), n) for v, n in pairs], 300)


def revision_chart(pairs: list) -> Chart:
    return _items_bar_chart(_("Revision status"), _ordered(pairs, RevisionStatus), 300)


def rubric_means_chart(rubric: dict) -> Chart:
    data = [
        (_label(RubricDimension, d), round(rubric[d]["mean"], 2))
        for d in RubricDimension.values
        if d in rubric and rubric[d]["mean"] is not None
    ]
    return hbar_chart(
        title=_("Mean rubric score per dimension, 0–2 (Figure 4)"),
        data=data,
        empty_message=_("No rubric scores yet."),
    )


def rubric_distribution_chart(rubric: dict) -> Chart:
    dims = [d for d in RubricDimension.values if d in rubric and rubric[d]["n"]]
    return stacked_bar(
        title=_("Rubric score distribution per dimension"),
        categories=[_label(RubricDimension, d) for d in dims],
        series=[
            (_("Score %(s)d") % {"s": s}, [rubric[d]["counts"][s] for d in dims]) for s in (0, 1, 2)
        ],
        empty_message=_("No rubric scores yet."),
    )


def throughput_chart(per_day: list) -> Chart:
    return bar_chart(
        title=_("Human judgements per day"),
        data=[(day[5:], n) for day, n in per_day],
        empty_message=_("No reviews yet."),
    )


def question_type_label(value: str) -> str:
    return _label(QuestionType, value)


def dashboard_charts(data: dict) -> dict[str, Chart]:
    dist = data["distributions"]
    return {
        "funnel": funnel_chart(data["funnel"]),
        "outcome": outcome_chart(data["funnel"]),
        "specialty": specialty_chart(dist["specialty"]),
        "cognitive_level": cognitive_chart(dist["cognitive_level"]),
        "difficulty": difficulty_chart(dist["difficulty"]),
        "rubric_means": rubric_means_chart(data["rubric"]),
        "rubric_distribution": rubric_distribution_chart(data["rubric"]),
        "throughput": throughput_chart(data["throughput"]["per_day"]),
    }


def statistic_label(name: str) -> str:
    return {
        "percent_agreement": _("Percent agreement"),
        "kappa_mean": _("Cohen's κ (mean over pairs)"),
        "alpha_nominal": _("Krippendorff's α (nominal)"),
        "weighted_kappa_mean": _("Weighted κ, quadratic (mean over pairs)"),
        "alpha_ordinal": _("Krippendorff's α (ordinal)"),
        "icc_2_1": _("ICC(2,1)"),
    }.get(name, name)


def agreement_rows(agreement: dict) -> list[dict]:
    """One row per judgement: its overall statistics and its per-pair values."""
    judgements = [
        ("consensus_phrasing", _("Consensus: phrasing approved (binary)")),
        ("consensus_key", _("Consensus: key held correct (nominal)")),
        ("panel_decision", _("Panel decision (nominal)")),
    ] + [
        (d, _("Rubric: %(dimension)s (ordinal 0–2)") % {"dimension": _label(RubricDimension, d)})
        for d in RubricDimension.values
    ]
    rows = []
    for key, label in judgements:
        summary = agreement["rubric"][key] if key in agreement["rubric"] else agreement[key]
        rows.append(
            {
                "key": key,
                "label": label,
                "overall": [
                    {"name": statistic_label(name), **stat}
                    for name, stat in summary["overall"].items()
                ],
                "pairs": summary["pairs"],
            }
        )
    return rows
