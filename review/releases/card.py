"""The dataset card (README.md with a Hugging Face YAML header) and the numbers behind it.

The card is written in English whatever the builder's language, and contains nothing that
changes from one build to the next (no dates, no build times), so a rebuild is byte-identical.
"""

from __future__ import annotations

import json
from collections import Counter

from django.utils import translation

from review.quality.card import ConfidenceStats, quality_card_lines
from review.releases import figures
from review.releases.writers import DIMENSIONS, FIELDS

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


def card_charts(*, funnel: dict, release_stats: dict) -> dict[str, str]:
    """chart name → SVG, in English."""
    with translation.override("en"):
        return {
            "funnel": figures.funnel_chart(funnel),
            "outcome": figures.outcome_chart(funnel),
            "specialty": figures.specialty_chart(
                release_stats["specialty"], title="Released items by specialty"
            ),
            "cognitive_level": figures.cognitive_chart(release_stats["cognitive_level"]),
            "difficulty": figures.difficulty_chart(release_stats["difficulty"]),
            "rubric_means": figures.rubric_means_chart(release_stats["rubric"]),
            "rubric_distribution": figures.rubric_distribution_chart(release_stats["rubric"]),
        }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cell(text: object) -> str:
    """Table cells may hold names typed by people: keep them on one line and away from the
    Markdown table syntax."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _agreement_lines(name: str, summary: dict) -> list[str]:
    lines = []
    # A fixed order, not the dict's: stats stored in a PostgreSQL jsonb column come back with
    # their keys reordered, and the card must not change with that.
    overall = summary["overall"]
    for stat_name in [*STATISTIC_NAMES, *sorted(set(overall) - set(STATISTIC_NAMES))]:
        if stat_name not in overall:
            continue
        stat = overall[stat_name]
        ci = (
            f"{stat['ci_low']:.3f} – {stat['ci_high']:.3f}"
            if stat.get("ci_low") is not None
            else ""
        )
        lines.append(
            f"| {name} | {STATISTIC_NAMES.get(stat_name, stat_name)} | {_num(stat['value'])} "
            f"| {ci} | {stat['n_items']:,} | {len(summary['pairs'])} |"
        )
    return lines


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
    """README.md. Both configs point at JSON Lines files because `datasets` reads every
    config of a directory with one builder, chosen from the default config's format. `stats`
    holds "funnel", "agreement", "release" and (with a previous
    release) "diff"."""
    release = stats["release"]
    funnel = stats["funnel"]
    n = release["total"]
    confirmed_share = (
        funnel["confirmed_first_pass"] / funnel["constructed"] if funnel["constructed"] else None
    )
    languages = [lang for lang, _count in release["language"]] or ["en"]
    yaml = [
        "---",
        f"pretty_name: {json.dumps(f'{project_name} {version}', ensure_ascii=False)}",
        "language:",
        *(f"- {json.dumps(lang)}" for lang in sorted(languages)),
        f"license: {json.dumps(license)}",
        "task_categories:",
        "- question-answering",
        "- text-generation",
        "task_ids:",
        "- multiple-choice-qa",
        "size_categories:",
        f"- {size_category(n)}",
        "tags:",
        "- medical",
        "- clinical-reasoning",
        "- chain-of-thought",
        "configs:",
        "- config_name: default",
        "  default: true",
        "  data_files:",
        "  - split: train",
        "    path: data.jsonl",
        "- config_name: chat",
        "  data_files:",
        "  - split: train",
        "    path: chat.jsonl",
        "---",
        "",
    ]
    body = [f"# {_cell(project_name)} — release {version}", ""]
    if project_description.strip():
        body += [project_description.strip(), ""]
    if notes.strip():
        body += [notes.strip(), ""]
    active = {k: v for k, v in sorted(filters.items()) if v}
    body += [
        f"{n:,} multiple-choice clinical questions with chain-of-thought explanations, each "
        "confirmed by a physician in first-pass review, re-answered by a model without its "
        "explanation (five failed attempts escalate an item to an expert panel that scores it "
        "on a five-dimension rubric), and approved by at least two experts who agree on the key "
        "and the phrasing.",
        "",
        "Filters: "
        + (
            "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in active.items())
            if active
            else "none (every approved item with consensus)."
        ),
        "",
        "## Files",
        "",
        "| File | Contents |",
        "| --- | --- |",
        "| `data.jsonl` | One record per item as JSON Lines (the `default` config). |",
        "| `data.parquet` | The same records in Parquet, with a fixed schema. |",
        "| `data.csv` | The same records; options in `option_a`…`option_e`, lists as JSON. |",
        "| `chat.jsonl` | Supervised fine-tuning messages: system, user (question and "
        "options), assistant (the explanation as `reasoning_content`, then the answer). |",
        "| `agreement.json` | Every agreement statistic, per pair of experts and overall. |",
        "| `charts/*.svg` | The charts below. |",
    ]
    if previous_version and stats.get("diff"):
        body.append(
            f"| `diff.jsonl` | Items added, removed and changed since "
            f"{version_ref(previous_version)}. |"
        )
    body += [
        "| `checksums.sha256` | SHA-256 of every file (`sha256sum -c checksums.sha256`). |",
        "",
        "## How the items were validated",
        "",
        "The project's funnel when this release was built, in the terms of the MedCoT paper "
        "(§3.2).",
        "",
        "![Funnel](charts/funnel.svg)",
        "",
        "| Stage | Items | Share |",
        "| --- | ---: | ---: |",
        f"| Constructed (seeds and synthetic) | {funnel['constructed']:,} | |",
        f"| Seeds | {funnel['seeds']:,} | |",
        f"| Confirmed by first-pass review | {funnel['confirmed_first_pass']:,} "
        f"| {_pct(confirmed_share)} of constructed |",
        f"| Five-strike escalations to an expert panel | {funnel['escalated']:,} "
        f"| {_pct(funnel['escalated_share'])} of confirmed |",
        f"| Finalized (approved) | {funnel['finalized']:,} | |",
        f"| Unrevised | {funnel['unrevised']:,} | {_pct(funnel['unrevised_share'])} of decided |",
        f"| Modified | {funnel['modified']:,} | {_pct(funnel['modified_share'])} of decided |",
        f"| Discarded | {funnel['discarded']:,} | {_pct(funnel['discarded_share'])} of decided |",
        f"| Still in progress | {funnel['in_progress']:,} | |",
        "",
        "![Outcome](charts/outcome.svg)",
        "",
        "## What the release contains",
        "",
        "![Specialties](charts/specialty.svg)",
        "",
        "![Cognitive level](charts/cognitive_level.svg)",
        "![Difficulty](charts/difficulty.svg)",
        "",
        "| Property | Value | Items |",
        "| --- | --- | ---: |",
    ]
    for name in ("language", "question_type", "kind", "revision_status", "first_pass_result"):
        for value, count in release[name]:
            body.append(f"| {name} | {_cell(value) or '—'} | {count:,} |")
    body += [
        f"| escalated | true | {release['escalated']:,} |",
        "",
        "## Rubric scores",
        "",
        "Expert panels score escalated items 0–2 on five dimensions (counts over every expert and "
        "round on the released items).",
        "",
        "![Rubric means](charts/rubric_means.svg)",
        "",
        "![Rubric distribution](charts/rubric_distribution.svg)",
        "",
        "| Dimension | Scores | Mean | 0 | 1 | 2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in DIMENSIONS:
        entry = release["rubric"][d]
        c0, c1, c2 = entry["counts"]
        body.append(f"| {d} | {entry['n']:,} | {_num(entry['mean'])} | {c0:,} | {c1:,} | {c2:,} |")
    body += [
        "",
        "## Agreement between experts",
        "",
        "Computed over all expert judgements in the project when this release was built; "
        "`Items` is the number of items (or item-rounds) with at least two judgements behind each "
        "value. Pairwise values for every pair of experts are in `agreement.json`.",
        "",
        "| Judgement | Statistic | Value | 95% CI | Items | Expert pairs |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    agreement = stats["agreement"]
    for key, label in AGREEMENT_ROWS:
        body += _agreement_lines(label, agreement[key])
    for d in DIMENSIONS:
        body += _agreement_lines(f"Rubric: {d} (ordinal 0–2)", agreement["rubric"][d])
    body += quality_card_lines(release.get("quality"))
    body += ["", "## Fields", "", "| Field | Meaning |", "| --- | --- |"]
    body += [f"| `{name}` | {meaning} |" for name, meaning in FIELDS]
    if previous_version and stats.get("diff"):
        diff = stats["diff"]
        body += [
            "",
            f"## Changes since {version_ref(previous_version)}",
            "",
            f"{diff['added']:,} added, {diff['removed']:,} removed, {diff['changed']:,} changed.",
        ]
        if diff["fields"]:
            body += ["", "| Field | Items changed |", "| --- | ---: |"]
            body += [f"| `{k}` | {v:,} |" for k, v in diff["fields"].items()]
    elif previous_version:
        body += [
            "",
            f"## Changes since {version_ref(previous_version)}",
            "",
            "Not listed: the files of that release were no longer on the server at build time.",
        ]
    body += [
        "",
        "## Privacy",
        "",
        "Experts appear only under pseudonymous ids. No names, e-mail addresses or account "
        "details of reviewers or experts, and no API keys, are part of this release. Raw model "
        "reasoning traces are not included: only explanations validated by people are.",
        "",
    ]
    return "\n".join(yaml + body)


def version_ref(version: str) -> str:
    return f"release {version}"
