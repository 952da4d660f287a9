"""The dataset card's section on verdict confidence: a collector fed with every released record
while the files are written, and the Markdown lines it renders to."""

from __future__ import annotations

import statistics

from django.utils.translation import gettext as _

# Upper bounds of the confidence bins (P(valid) of the released version).
BINS = ((0.5, "< 0.50"), (0.8, "0.50–0.80"), (0.95, "0.80–0.95"), (0.99, "0.95–0.99"))
TOP = "≥ 0.99"


class ConfidenceStats:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.missing = 0
        self.verdicts: dict[str, int] = {}

    def add(self, record: dict) -> None:
        value = record.get("verdict_confidence")
        if value is None:
            self.missing += 1
        else:
            self.values.append(float(value))
        n = record.get("n_verdicts")
        key = "—" if n is None else (str(n) if n < 5 else "5+")
        self.verdicts[key] = self.verdicts.get(key, 0) + 1

    def as_dict(self) -> dict:
        bins = {label: 0 for _, label in BINS} | {TOP: 0}
        for value in self.values:
            for bound, label in BINS:
                if value < bound:
                    bins[label] += 1
                    break
            else:
                bins[TOP] += 1
        return {
            "n": len(self.values),
            "missing": self.missing,
            "mean": statistics.fmean(self.values) if self.values else None,
            "median": statistics.median(self.values) if self.values else None,
            "bins": bins,
            "n_verdicts": dict(sorted(self.verdicts.items())),
        }


def quality_card_lines(quality: dict | None) -> list[str]:
    """The card's "Verdict confidence" section: its heading in the card's language (the
    services render the card under it), its text in English like the rest of the card's prose."""
    if not quality:
        return []
    total = quality["n"] + quality["missing"]
    lines = [
        "",
        "## " + _("Verdict confidence"),
        "",
        "Each record's `verdict_confidence` is the posterior probability that its released "
        "version is valid, from a Dawid–Skene model fitted over every human verdict in the "
        "project (first-pass reviews, panel decisions, consensus votes, and answers to control "
        "items with known verdicts, which calibrate each reviewer); `n_verdicts` is the number "
        "of verdicts on that version. Null when the periodic refit had not yet seen the version.",
        "",
    ]
    if quality["n"]:
        lines.append(
            f"Mean {quality['mean']:.3f}, median {quality['median']:.3f} over "
            f"{quality['n']:,} of {total:,} records."
        )
    else:
        lines.append(f"No record of the {total:,} carries a confidence yet.")
    lines += ["", "| P(valid) | Records | Share |", "| --- | ---: | ---: |"]
    for label, count in quality["bins"].items():
        share = f"{count / quality['n']:.1%}" if quality["n"] else "—"
        lines.append(f"| {label} | {count:,} | {share} |")
    if quality["missing"]:
        lines.append(f"| no posterior | {quality['missing']:,} | |")
    lines += ["", "| Verdicts per record | Records |", "| --- | ---: |"]
    lines += [f"| {k} | {v:,} |" for k, v in quality["n_verdicts"].items()]
    return lines
