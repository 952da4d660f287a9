"""The machine judge in a release: its scores as their own, clearly named field (never mixed
with the experts' `rubric_scores`), and the dataset card's "Machine judge" section with the
calibration behind any use the project made of it."""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
from django.utils.translation import gettext as _

from generation.public import JUDGE_DIMENSIONS, JudgeScore
from medcot.models import Project
from review.judge import services

FIELD = "machine_judge_scores"
FIELD_MEANING = (
    "Machine judge (an LLM, not a person): its scores 0–2 per rubric dimension of the released "
    "version, its first wrong step and the answer it holds correct, with the model and prompt "
    "version that gave them. Never a human verdict; empty when no judge scored the version."
)
ENTRY_TYPE = pa.struct(
    [("model", pa.string()), ("prompt_version", pa.string())]
    + [(d, pa.int8()) for d in JUDGE_DIMENSIONS]
    + [("first_wrong_step", pa.int32()), ("answer", pa.string())]
)
ARROW_TYPE = pa.list_(ENTRY_TYPE)


def judge_entries(*, span: dict, keys: dict[int, tuple]) -> dict[int, list[dict]]:
    """{item id: [one entry per judge that scored the released version]} for a chunk of a
    release (`keys` maps item id to (released version id, key), `span` bounds the item ids)."""
    entries: dict[int, list[dict]] = defaultdict(list)
    rows = (
        JudgeScore.objects.filter(**span)
        .select_related("prompt_version")
        .order_by("item_id", "id")
        .only(
            "item_id",
            "version_id",
            "model",
            "prompt_version__task",
            "prompt_version__variant",
            "prompt_version__language",
            "prompt_version__number",
            "first_wrong_step",
            "answer",
            *JUDGE_DIMENSIONS,
        )
    )
    for score in rows:
        if score.item_id not in keys or keys[score.item_id][0] != score.version_id:
            continue
        entries[score.item_id].append(
            {
                "model": score.model,
                "prompt_version": score.prompt_version.label,
                **score.scores(),
                "first_wrong_step": score.first_wrong_step,
                "answer": score.answer,
            }
        )
    return entries


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def card_section(*, project: Project) -> list[str]:
    """The card's "Machine judge" section: what the judge's columns are, how far the judge
    agreed with the experts per dimension, and which uses the project had switched on."""
    lines = ["", "## " + _("Machine judge"), ""]
    judge = services.judge_active(project=project)
    if judge is None:
        lines.append("No machine judge scored items of this project.")
        return lines
    about = next(j for j in services.judges_of_project(project=project) if j["key"] == judge)
    calibration = services.calibration_for(project=project, judge=judge)
    settings = services.judge_settings_get(project=project)
    routing = services.judge_routing(project=project)
    lines += [
        f"`{FIELD}` holds scores by an LLM judge, kept apart from the experts' `rubric_scores` "
        "and never counted as a human verdict. Reviewers and experts saw the judge's opinion "
        "only after submitting their own.",
        "",
        f"Judge: {about['model']} (profile {about['profile']}), prompt {about['prompt']}; "
        f"{calibration.n_judged:,} item versions judged.",
        "",
        "Agreement with the experts on the items both scored (experts' score = lower median "
        "of their scores; 95 % intervals):",
        "",
        "| Dimension | n | weighted κ | 95 % CI | ICC(2,1) | 95 % CI | Trusted |",
        "| --- | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for row in calibration.dimensions:
        k, icc = row.kappa, row.icc
        lines.append(
            f"| {row.dimension} | {row.n_items:,} | {_fmt(k.value)} | "
            f"{_fmt(k.ci_low)} – {_fmt(k.ci_high)} | {_fmt(icc.value)} | "
            f"{_fmt(icc.ci_low)} – {_fmt(icc.ci_high)} | {'yes' if row.trusted else 'no'} |"
        )
    steps = calibration.steps
    lines += [
        "",
        f"Trusted means the lower end of the weighted κ interval reached {settings.kappa_threshold}"
        f" on at least {settings.min_items} items. First wrong step: same step (or both none) "
        f"on {_fmt(steps.exact.value)} of {steps.n} expert decisions.",
        "",
        "Uses in this project at build time: "
        + (
            "first-pass and panel queues ordered by judge risk on the trusted dimensions "
            f"({', '.join(sorted(routing.trusted))})"
            if routing.order_queues
            else "queues in arrival order"
        )
        + "; "
        + (
            "a second first-pass reviewer required where the judge scored medical correctness 0"
            if routing.second_review_on_zero
            else "no second reviewer required by the judge"
        )
        + ".",
    ]
    return lines
