"""The machine judge: an LLM scores an item's chain of thought on the experts' five-dimension
rubric, 0-2 each with a one-sentence rationale, names the first wrong step of the CoT (if any)
and the answer it holds correct.

The prompt is a versioned prompt (`judge.default`, English and Chinese) with the active rubric
guide of the item's language pasted in, so the judge reads the standard the experts read. The
reply is validated against `JUDGE_SCHEMA` whatever the profile's structured-output mode; a reply
that fails is logged as unusable and asked for once more, then the job fails with the reason.

Judge scores are machine scores (`JudgeScore`): stored apart from the experts' `RubricScore`
rows and never counted as a human verdict. Who may see them, and when, is review.judge's rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema
from django.db import connection
from django.db.models import Exists, OuterRef

from generation import services
from generation.dbexec import in_db
from generation.models import JUDGE_DIMENSIONS, JudgeScore, Task
from generation.parsing import ReplyFormatError, parse_answer
from generation.prompts import options_text
from generation.services import CallInfo, JobContext
from medcot.bulk import insert_row
from medcot.models import Item
from medcot.rubric import rubric_current

JUDGE_SCHEMA_NAME = "rubric_judgement"
_SCORE = {"type": "integer", "enum": [0, 1, 2]}
JUDGE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "object",
            "properties": {d: _SCORE for d in JUDGE_DIMENSIONS},
            "required": list(JUDGE_DIMENSIONS),
            "additionalProperties": False,
        },
        "rationales": {
            "type": "object",
            "properties": {d: {"type": "string", "maxLength": 600} for d in JUDGE_DIMENSIONS},
            "required": list(JUDGE_DIMENSIONS),
            "additionalProperties": False,
        },
        "first_wrong_step": {"type": ["integer", "null"], "minimum": 1},
        "answer": {"type": "string", "enum": ["A", "B", "C", "D", "E"]},
    },
    "required": ["scores", "rationales", "first_wrong_step", "answer"],
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(JUDGE_SCHEMA)

# Which rubric the prompt quotes when no guide has been written yet (a fresh database).
_FALLBACK_RUBRIC = {
    "en": "Five dimensions: medical_correctness, reasoning_structure, information_sufficiency, "
    "terminology_clarity, clinical_utility. 0 = inadequate, 1 = partly adequate, 2 = fully "
    "adequate.",
    "zh": "五个维度：medical_correctness（医学正确性）、reasoning_structure（推理结构）、"
    "information_sufficiency（信息充分性）、terminology_clarity（术语清晰度）、"
    "clinical_utility（临床实用性）。0 = 不合格，1 = 部分合格，2 = 完全合格。",
}


@dataclass(frozen=True)
class Judgement:
    scores: dict[str, int]
    rationales: dict[str, str]
    first_wrong_step: int | None
    answer: str


def cot_steps(cot: str) -> list[str]:
    """The CoT's steps as numbered for the judge and the experts: its non-empty lines."""
    return [line.strip() for line in (cot or "").splitlines() if line.strip()]


def rubric_text(language: str) -> tuple[str, str]:
    """The active rubric guide in the item's language as prompt text, and its label
    ("en v2"). The review app owns the guides and hands them over through the core."""
    lang = "zh-hans" if language == "zh" else "en"
    guide = rubric_current(lang)
    if guide is None:
        return _FALLBACK_RUBRIC.get(language, _FALLBACK_RUBRIC["en"]), ""
    lines = [guide.introduction.strip()] if guide.introduction.strip() else []
    for dimension in JUDGE_DIMENSIONS:
        levels = guide.levels.get(dimension) or {}
        lines.append(f"{dimension}:")
        lines += [f"  {level}: {levels.get(level, '').strip()}" for level in ("0", "1", "2")]
    return "\n".join(lines), f"{guide.language} v{guide.version}"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_judgement(content: str, *, options: dict[str, str], steps: int) -> Judgement:
    """The judge's reply as a `Judgement`, or ReplyFormatError saying what is wrong."""
    text = (content or "").strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ReplyFormatError("The judge's reply holds no JSON object")
    try:
        data = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise ReplyFormatError(f"The judge's reply is not valid JSON: {exc}") from exc
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "reply"
        raise ReplyFormatError(
            f"The judge's reply does not fit the schema at {where}: {errors[0].message}"
        )
    if data["answer"] not in options:
        raise ReplyFormatError(
            f"The judge holds option {data['answer']} correct, which the item lacks"
        )
    step = data["first_wrong_step"]
    if step is not None and step > max(1, steps):
        raise ReplyFormatError(f"The judge names step {step} of a CoT with {steps} steps")
    return Judgement(
        scores={d: int(data["scores"][d]) for d in JUDGE_DIMENSIONS},
        rationales={d: data["rationales"][d].strip()[:600] for d in JUDGE_DIMENSIONS},
        first_wrong_step=step,
        answer=data["answer"],
    )


# -- database steps (run through in_db) -----------------------------------------------------

# The stages at which an item has a CoT a person will judge, or has judged.
JUDGED_STATUSES = (
    "first_review",
    "reanswering",
    "panel",
    "panel_review",
    "consensus",
    "approved",
)


def judge_eligible(items, *, profile):
    """Of `items`, those a judge run with `profile` works on: a CoT in a human stage (or
    approved), and no scores from this profile on the current version yet."""
    items = items.filter(status__in=JUDGED_STATUSES).exclude(current_version__cot="")
    if profile is not None:
        items = items.exclude(
            Exists(
                JudgeScore.objects.filter(
                    version_id=OuterRef("current_version_id"), profile=profile
                )
            )
        )
    return items


def judge_begin(*, ctx: JobContext, prompt_version_id: int) -> int | None:
    """The id of the version to judge, or None when there is nothing to do: no CoT, or this
    profile already judged this version with this prompt (a job run twice)."""
    with connection.cursor() as cursor:
        sql = f"SELECT current_version_id FROM {Item._meta.db_table} WHERE id = %s"  # noqa: S608
        cursor.execute(sql, [ctx.item_id])
        row = cursor.fetchone()
    version_id = row[0] if row else None
    if version_id is None or not (ctx.cot or "").strip():
        return None
    done = JudgeScore.objects.filter(
        version_id=version_id, profile_id=ctx.profile.id, prompt_version_id=prompt_version_id
    ).exists()
    return None if done else version_id


def judge_store(
    *,
    ctx: JobContext,
    call: CallInfo,
    judgement: Judgement,
    version_id: int,
    model: str,
    rubric_guide: str,
) -> None:
    """Log the call, store the scores once (a conflict means a twin job stored them first) and
    finish the job."""
    call_id = services.llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
    insert_row(
        JudgeScore,
        {
            "item_id": ctx.item_id,
            "version_id": version_id,
            "profile_id": ctx.profile.id,
            "prompt_version_id": call.prompt_version_id,
            "model": model[:200],
            "run_id": ctx.run_id,
            "llm_call_id": call_id,
            "rubric_guide": rubric_guide,
            **judgement.scores,
            "rationales": judgement.rationales,
            "first_wrong_step": judgement.first_wrong_step,
            "answer": judgement.answer,
        },
        on_conflict_do_nothing=("version_id", "profile_id", "prompt_version_id"),
        returning=False,
    )
    services.job_finish(job_id=ctx.job_id, ctx=ctx)


# -- the job --------------------------------------------------------------------------------


def judge_execute(ctx: JobContext, *, call, prompt_for) -> None:
    """One judge job. `call` and `prompt_for` are the pipeline's logged call and cached prompt
    lookup, so a judge call is retried, limited and logged like every other."""
    from generation.client import FatalLLMError

    prompt = prompt_for(Task.JUDGE, "default", ctx.language)
    version_id = in_db(judge_begin, ctx=ctx, prompt_version_id=prompt.version_id)
    if version_id is None:
        in_db(services.job_finish, job_id=ctx.job_id, ctx=ctx)
        return
    steps = cot_steps(ctx.cot)
    rubric, guide_label = in_db(rubric_text, ctx.language)
    messages = prompt.render(
        rubric=rubric,
        stem=ctx.stem,
        options=options_text(ctx.options),
        answer=ctx.answer,
        steps="\n".join(f"[{n}] {text}" for n, text in enumerate(steps, 1)),
    )
    concluded = parse_answer(ctx.cot, ctx.options)
    sim_facts = {
        "Key": ctx.answer,
        "Concluded": concluded.letter if concluded.ok and concluded.letter else "",
        "Steps": str(len(steps)),
    }
    problem = ""
    for _try in range(2):
        reply, info = call(
            ctx,
            task=Task.JUDGE,
            prompt=prompt,
            messages=messages,
            json_reply=True,
            schema=JUDGE_SCHEMA,
            schema_name=JUDGE_SCHEMA_NAME,
            sim_facts=sim_facts,
        )
        try:
            judgement = parse_judgement(reply.content, options=ctx.options, steps=len(steps))
        except ReplyFormatError as exc:
            problem = str(exc)
            info.record.error = services.unusable_reply_error(problem)
            in_db(services.llm_call_record, profile=ctx.profile, ctx=ctx, call=info)
            continue
        in_db(
            judge_store,
            ctx=ctx,
            call=info,
            judgement=judgement,
            version_id=version_id,
            model=reply.model or ctx.profile.model,
            rubric_guide=guide_label,
        )
        return
    raise FatalLLMError(f"The judge's replies were unusable twice: {problem}")
