"""The dataset card (README.md with a Hugging Face YAML header) and the numbers behind it.

The card is written in English whatever the builder's language, and contains nothing that
changes from one build to the next (no dates, no build times), so a rebuild is byte-identical.
"""

from __future__ import annotations

import json
from collections import Counter

from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from review.quality.card import ConfidenceStats, quality_card_lines
from review.releases.writers import DIMENSIONS, FIELDS
from review.reports import figures

SCORES = (0, 1, 2)

CHART_FILES = (
    ("funnel", "charts/funnel.svg"),
    ("outcome", "charts/outcome.svg"),
    ("specialty", "charts/specialty.svg"),
    ("cognitive_level", "charts/cognitive_level.svg"),
    ("difficulty", "charts/difficulty.svg"),
    ("rubric_means", "charts/rubric_means.svg"),
    ("rubric_distribution", "charts/rubric_distribution.svg"),
)

AGREEMENT_ROWS = (
    ("consensus_phrasing", "Consensus: phrasing approved (binary)"),
    ("consensus_key", "Consensus: key held correct (nominal A–E)"),
    ("panel_decision", "Panel decision: accept / revise / discard (nominal)"),
)
PROPERTIES = ("language", "question_type", "kind", "revision_status", "first_pass_result")
PROPERTIES = ("language", "question_type", "kind", "revision_status", "first_pass_result")
STATISTIC_NAMES = {
    "percent_agreement": "Percent agreement",
    "kappa_mean": "Cohen's κ (mean over rater pairs)",
    "alpha_nominal": "Krippendorff's α (nominal)",
    "weighted_kappa_mean": "Weighted κ, quadratic (mean over rater pairs)",
    "alpha_ordinal": "Krippendorff's α (ordinal)",
    "icc_2_1": "ICC(2,1), absolute agreement",
}


class ReleaseStats:
    """Counts over the released records, gathered while the files are written."""

    def __init__(self) -> None:
        self.total = 0
        self.counters: dict[str, Counter] = {
            name: Counter()
            for name in (
                "specialty",
                "cognitive_level",
                "difficulty",
                "language",
                "question_type",
                "revision_status",
                "kind",
                "first_pass_result",
                "consensus_size",
            )
        }
        self.escalated = 0
        self.rubric = {d: [0, 0, 0] for d in DIMENSIONS}
        self.quality = ConfidenceStats()

    def add(self, record: dict) -> None:
        self.total += 1
        for name, counter in self.counters.items():
            value = record[name]
            counter["" if value is None else str(value)] += 1
        self.escalated += bool(record["escalated"])
        self.quality.add(record)
        for entry in record["rubric_scores"]:
            for d in DIMENSIONS:
                score = entry.get(d)
                if score in SCORES:
                    self.rubric[d][score] += 1

    def as_dict(self) -> dict:
        rubric = {}
        for d, counts in self.rubric.items():
            n = sum(counts)
            mean = sum(s * c for s, c in zip(SCORES, counts, strict=True)) / n if n else None
            rubric[d] = {"counts": counts, "n": n, "mean": mean}
        return {
            "total": self.total,
            "escalated": self.escalated,
            "rubric": rubric,
            "quality": self.quality.as_dict(),
            **{
                name: sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
                for name, counter in self.counters.items()
            },
        }


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < limit:
            return label
    return "n>10M"


def card_charts(*, funnel: dict, release_stats: dict, language: str = "en") -> dict[str, str]:
    """chart name → SVG, in the card's language."""
    with translation.override(language):
        return {
            "funnel": figures.funnel_chart(funnel),
            "outcome": figures.outcome_chart(funnel),
            "specialty": figures.specialty_chart(
                release_stats["specialty"], title=_("Released items by specialty")
            ),
            "cognitive_level": figures.cognitive_chart(release_stats["cognitive_level"]),
            "difficulty": figures.difficulty_chart(release_stats["difficulty"]),
            "rubric_means": figures.rubric_means_chart(release_stats["rubric"]),
            "rubric_distribution": figures.rubric_distribution_chart(release_stats["rubric"]),
        }


def _agreement_rows(judgement: str, summary: dict) -> list[dict]:
    # A fixed order, not the dict's: stats stored in a PostgreSQL jsonb column come back with
    # their keys reordered, and the card must not change with that.
    overall = summary["overall"]
    return [
        {
            "judgement": judgement,
            "statistic": STATISTIC_NAMES.get(name, name),
            "value": overall[name]["value"],
            "ci_low": overall[name].get("ci_low"),
            "ci_high": overall[name].get("ci_high"),
            "n_items": overall[name]["n_items"],
            "pairs": len(summary["pairs"]),
        }
        for name in [*STATISTIC_NAMES, *sorted(set(overall) - set(STATISTIC_NAMES))]
        if name in overall
    ]


def _agreement_table(agreement: dict) -> list[dict]:
    """The card's agreement rows: consensus and panel judgements, then each rubric dimension."""
    rows = [row for key, label in AGREEMENT_ROWS for row in _agreement_rows(label, agreement[key])]
    for d in DIMENSIONS:
        rows += _agreement_rows(f"Rubric: {d} (ordinal 0–2)", agreement["rubric"][d])
    return rows


def render_card(
    *,
    project_name: str,
    project_description: str,
    version: str,
    license: str,
    notes: str,
    filters: dict,
    stats: dict,
    previous_version: str | None,
) -> str:
    """README.md, from templates/releases/card.md. Both configs point at JSON Lines files
    because `datasets` reads every config of a directory with one builder, chosen from the
    default config's format. `stats` holds "funnel", "agreement", "release" and (with a
    previous release) "diff"."""
    release = stats["release"]
    funnel = stats["funnel"]
    diff = stats.get("diff") if previous_version else None
    context = {
        "pretty_name": json.dumps(f"{project_name} {version}", ensure_ascii=False),
        "languages": sorted(lang for lang, _count in release["language"]) or ["en"],
        "license": license,
        "size_category": size_category(release["total"]),
        "project_name": project_name,
        "version": version,
        "version_ref": version_ref(version),
        "description": project_description.strip(),
        "notes": notes.strip(),
        "release": release,
        "filters": [(k, v) for k, v in sorted(filters.items()) if v],
        "previous_ref": version_ref(previous_version) if previous_version else "",
        "diff": diff,
        "diff_fields": list(diff["fields"].items()) if diff else [],
        "funnel": funnel,
        "confirmed_share": (
            funnel["confirmed_first_pass"] / funnel["constructed"]
            if funnel["constructed"]
            else None
        ),
        "properties": [
            (name, value, count) for name in PROPERTIES for value, count in release[name]
        ],
        "rubric": [(d, release["rubric"][d]) for d in DIMENSIONS],
        "agreement": _agreement_table(stats["agreement"]),
        "fields": FIELDS,
        "quality_section": "\n".join(["", *quality_card_lines(release.get("quality"))])
        if release.get("quality")
        else "",
    }
    # In the language the services render it under: the release's, never the builder's.
    return render_to_string("releases/card.md", context)


def version_ref(version: str) -> str:
    return _("release %(version)s") % {"version": version}
