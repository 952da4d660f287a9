"""The machine half of the pipeline: what one job does, call by call.

A job alternates short database steps (through `in_db`, see `generation.dbexec`) with model
calls that hold no database connection. Every step checks for finished work first, so a job
run twice (a redelivered message, a retry) creates no second item, attempt or version.

The review app starts work through `reanswer_enqueue` and `regenerate_enqueue`.
"""

from __future__ import annotations

import logging
import math
import random

from generation import services
from generation.client import (
    CallAborted,
    ChatReply,
    ChatRequest,
    FatalLLMError,
    LLMError,
    LocalLimitReached,
    PaymentRequired,
    RetriesExhausted,
    chat,
)
from generation.dbexec import in_db, job_held
from generation.models import Job, Run, Task
from generation.parsing import (
    SYNTHESIS_SCHEMA,
    SYNTHESIS_SCHEMA_NAME,
    ReplyFormatError,
    parse_answer,
    parse_synthesized_detailed,
)
from generation.prompts import REANSWER_VARIANTS, STRICT, options_text, prompt_cached, prompt_get
from generation.services import MAX_DROPPED_PER_REPLY, CallInfo, JobContext
from medcot.lifecycle import Status

log = logging.getLogger(__name__)

SYNTHESIS_ROUNDS = 3
# The share of extra questions asked for in each synthesis request.
SYNTHESIS_SPARE = 0.25


# -- the contract with the review app -------------------------------------------------------


def reanswer_enqueue(*, item_ids: list[int]) -> None:
    """Re-answer items already in `reanswering`; dispatched after commit; idempotent (an item
    with a re-answer job queued or running gets no second one)."""
    services.reanswer_jobs_add(item_ids=list(item_ids))


def regenerate_enqueue(*, item_id: int, guidance: str, actor_id: int | None) -> None:
    """Guided CoT regeneration for an item under panel review: appends an `llm_guided`
    version marked modified and writes a `regenerated` event; the status is left alone."""
    services.regenerate_job_create(item_id=item_id, guidance=guidance, actor_id=actor_id)


# -- running one job ------------------------------------------------------------------------


def job_execute(*, job_id: int, claim: str) -> str:
    """Do one job. Returns a word for the log: done, skipped, paused, error."""
    # The job's lock for as long as this copy runs: a message delivered again meanwhile (the
    # broker's visibility timeout) finds it held and does nothing; one delivered after this
    # copy's process died takes the job over (`dbexec.job_held`).
    with job_held(job_id) as hold:
        if hold.held is False:
            return "skipped"
        return _job_run(job_id=job_id, claim=claim, held=bool(hold.held))


def _job_run(*, job_id: int, claim: str, held: bool) -> str:
    ctx = in_db(services.job_claim, job_id=job_id, claim=claim, held=held)
    if ctx is None:
        return "skipped"
    try:
        HANDLERS[ctx.kind](ctx)
    except PaymentRequired as exc:
        message = (
            f"Paused: {exc} Top up the account (or switch the run to another profile), then resume."
        )
        in_db(services.run_pause_for_payment, run_id=ctx.run_id, job_id=job_id, message=message)
        return "paused"
    except CallAborted:
        in_db(services.job_release, job_id=job_id)
        return "paused"
    except (FatalLLMError, RetriesExhausted) as exc:
        in_db(services.job_fail, job_id=job_id, reason=str(exc))
        return "error"
    except LocalLimitReached:
        # This machine had no room (connections, files, the limiter's Redis): not the item's
        # fault. The job keeps its claim; the task puts its message back (tasks.py).
        raise
    except Exception as exc:
        log.exception("job %s failed", job_id)
        in_db(
            services.job_fail, job_id=job_id, reason=f"Internal error: {type(exc).__name__}: {exc}"
        )
        return "error"
    return "done"


def _still_running(ctx: JobContext) -> bool:
    return in_db(services.run_state, run_id=ctx.run_id) == Run.State.RUNNING


def _call(ctx: JobContext, *, task: str, prompt, messages, **request) -> tuple[ChatReply, CallInfo]:
    """One logical model call with its retries. Failed tries are logged as they happen; the
    successful one comes back to be logged together with its result."""

    def on_failure(record):
        info = CallInfo(
            record=record, task=task, messages=messages, prompt_version_id=prompt.version_id
        )
        in_db(services.llm_call_record, profile=ctx.profile, ctx=ctx, call=info)

    reply, record = chat(
        ctx.profile,
        ChatRequest(task=task, messages=messages, **request),
        on_failure=on_failure,
        should_continue=lambda: _still_running(ctx),
    )
    return reply, CallInfo(
        record=record, task=task, messages=messages, prompt_version_id=prompt.version_id
    )


def _prompt(task: str, variant: str, language: str):
    # Served from the per-process cache without a trip through the database threads.
    cached = prompt_cached(task=task, variant=variant, language=language)
    return cached or in_db(prompt_get, task=task, variant=variant, language=language)


def _cot(ctx: JobContext) -> None:
    if not in_db(services.cot_begin, ctx=ctx):
        in_db(services.job_finish, job_id=ctx.job_id)
        return
    values = {
        "stem": ctx.stem,
        "options": options_text(ctx.options),
        "specialty": ctx.specialty or "—",
        "question_type": ctx.question_type,
    }
    for variant in ("default", STRICT):
        prompt = _prompt(Task.COT, variant, ctx.language)
        messages = prompt.render(**values)
        reply, call = _call(
            ctx, task=Task.COT, prompt=prompt, messages=messages, sim_facts={"Key": ctx.answer}
        )
        parsed = parse_answer(reply.content, ctx.options)
        # An unparseable pick is retried once with the stricter prompt; the CoT is kept either
        # way, since its explanation is what reviewers judge.
        if parsed.ok or variant == STRICT:
            break
        in_db(services.llm_call_record, profile=ctx.profile, ctx=ctx, call=call)
    in_db(
        services.cot_apply,
        ctx=ctx,
        call=call,
        cot=reply.content.strip(),
        reasoning=reply.reasoning,
        picked=parsed.letter if parsed.ok else None,
        parse_method=parsed.method,
    )


def _synthesis_call(ctx: JobContext, *, variant: str, need: int) -> tuple:
    """Ask the model for new questions in the seed's family; returns the reply and the call."""
    prompt = _prompt(Task.SYNTHESIZE, variant, ctx.language)
    # Ask for a few more than the family needs: some questions come back unusable or as
    # near-duplicates, and another round costs a whole model call (30-120 s with a
    # reasoning model). Extras beyond what is needed are not stored.
    ask = need + max(1, math.ceil(need * SYNTHESIS_SPARE))
    messages = prompt.render(
        stem=ctx.stem,
        options=options_text(ctx.options),
        answer=ctx.answer,
        answer_text=ctx.options.get(ctx.answer, ""),
        cot=ctx.cot or "—",
        count=ask,
    )
    return _call(
        ctx,
        task=Task.SYNTHESIZE,
        prompt=prompt,
        messages=messages,
        json_reply=True,
        schema=SYNTHESIS_SCHEMA,
        schema_name=SYNTHESIS_SCHEMA_NAME,
        sim_facts={"Count": str(ask)},
    )


def _family_store(ctx: JobContext, *, call: CallInfo, questions: list, need: int):
    """Store the reply's usable questions, near-duplicates left out. Only the lookups run on
    the database threads; signing the questions and comparing them with their candidates
    runs here."""
    questions = questions[: need + MAX_DROPPED_PER_REPLY]
    signed = services.signed_questions(questions)
    candidates_of, known = in_db(
        services.family_candidates, ctx=ctx, bands_of=[b for _, b in signed]
    )
    plan = services.family_sort(
        questions=questions,
        signed=signed,
        candidates_of=candidates_of,
        known=known,
        need=need,
    )
    return in_db(services.family_store, ctx=ctx, call=call, plan=plan)


def _expand(ctx: JobContext) -> None:
    """Grow the seed's family: up to SYNTHESIS_ROUNDS calls until it has the questions it
    needs; an unusable reply is retried once with the strict prompt."""
    need = in_db(services.expand_plan, ctx=ctx)
    if need is None:
        in_db(services.job_finish, job_id=ctx.job_id)
        return
    problems: list[str] = []
    state = Run.State.RUNNING
    variant = "default"
    for _round in range(SYNTHESIS_ROUNDS):
        if need <= 0:
            break
        if state != Run.State.RUNNING:
            raise CallAborted("The run was paused or cancelled")
        reply, call = _synthesis_call(ctx, variant=variant, need=need)
        try:
            parsed = parse_synthesized_detailed(reply.content)
        except ReplyFormatError as exc:
            # A reply with no valid question (an answer to the seed instead of JSON, broken
            # JSON) is logged as unusable, so the run page can count and show it. It is tried
            # once more with the strict prompt; a strict reply as bad ends the family here.
            problems.append(str(exc))
            call.record.error = services.unusable_reply_error(str(exc))
            in_db(services.llm_call_record, profile=ctx.profile, ctx=ctx, call=call)
            if variant == STRICT:
                break
            variant = STRICT
            continue
        problems.extend(parsed.rejected)
        stored = _family_store(ctx, call=call, questions=parsed.questions, need=need)
        if stored.complete:
            return
        need -= stored.created
        state = stored.run_state
    in_db(
        services.family_complete,
        ctx=ctx,
        short_by=max(0, need),
        reason="; ".join(problems)[:2000] if need > 0 else "",
    )


def option_order_for(*, item_id: int, number: int, labels: list[str]) -> list[str]:
    """The first attempt shows the options as written; later ones shuffle them, differently
    for each attempt but reproducibly (seeded by item and attempt number)."""
    if number == 1:
        return list(labels)
    order = list(labels)
    rng = random.Random(f"{item_id}:{number}")
    for _ in range(5):
        rng.shuffle(order)
        if order != labels:
            break
    return order


def _strikes(attempts: list) -> int:
    """Attempts that gave a parsed answer other than the key."""
    return sum(1 for a in attempts if a.parsed and not a.correct)


def _reanswer_settled(ctx: JobContext, *, status: str, attempts: list) -> bool:
    """Finish the job if the item has left re-answering, or conclude it on a correct attempt
    (to consensus) or on the allowed number of wrong ones (to the panel); True if either."""
    if status != Status.REANSWERING:
        in_db(services.job_finish, job_id=ctx.job_id, ctx=ctx)
        return True
    correct = next((a for a in attempts if a.correct), None)
    strikes = _strikes(attempts)
    if correct is not None:
        in_db(
            services.reanswer_conclude,
            ctx=ctx,
            to=Status.CONSENSUS,
            reason="",
            data={"correct_attempt": correct.number},
        )
        return True
    if strikes >= ctx.reanswer_limit:
        in_db(
            services.reanswer_conclude,
            ctx=ctx,
            to=Status.PANEL,
            reason=f"{strikes} re-answer attempts failed",
            data={"strikes": strikes},
        )
        return True
    return False


def _unparsed_check(ctx: JobContext, *, attempts: list) -> None:
    """Give up on a model whose replies keep failing to parse. Attempts before a retry do not
    count against the allowance for unparseable replies: the retry resets it
    (`attempts_base`), so a retried item gets new calls."""
    number = len(attempts) + 1
    base = int(ctx.payload.get("attempts_base") or 0)
    unparsed = sum(1 for a in attempts if a.number > base and not a.parsed)
    if unparsed and unparsed + _strikes(attempts) >= (
        ctx.reanswer_limit + services.UNPARSED_ALLOWANCE
    ):
        raise FatalLLMError(
            f"The model's replies could not be parsed ({unparsed} of "
            f"{number - 1 - base} attempts); check the prompts or the model"
        )


def _reanswer_attempt(ctx: JobContext, *, attempts: list, models: list[str]) -> tuple:
    """Make the next attempt: the options in this attempt's order, the prompt variant (the
    strict one after an unparsed reply), the call, and the answer mapped back to the item's
    labels. Returns whether it was stored, the run's state, and the attempt's summary."""
    labels = list(ctx.options)
    number = len(attempts) + 1
    last_unparsed = bool(attempts) and not attempts[-1].parsed
    variant = STRICT if last_unparsed else REANSWER_VARIANTS[(number - 1) % len(REANSWER_VARIANTS)]
    model = models[(number - 1) % len(models)]
    order = option_order_for(item_id=ctx.item_id, number=number, labels=labels)
    shown = {labels[i]: ctx.options[original] for i, original in enumerate(order)}
    shown_key = labels[order.index(ctx.answer)]
    prompt = _prompt(Task.REANSWER, variant, ctx.language)
    messages = prompt.render(
        stem=ctx.stem, options=options_text(shown), specialty=ctx.specialty or "—"
    )
    reply, call = _call(
        ctx,
        task=Task.REANSWER,
        prompt=prompt,
        messages=messages,
        model=model,
        sim_facts={"Key": shown_key},
    )
    parsed = parse_answer(reply.content, shown)
    raw = parsed.letter if parsed.ok and parsed.letter else ""
    mapped = order[labels.index(raw)] if raw in labels else ""
    correct = bool(mapped) and mapped == ctx.answer
    stored, state = in_db(
        services.reanswer_attempt_store,
        ctx=ctx,
        call=call,
        number=number,
        variant=variant,
        model=reply.model or model,
        option_order="".join(order),
        raw_answer=raw,
        answer=mapped,
        parsed=bool(mapped),
        parse_method=parsed.method if mapped else "",
        correct=correct,
        reply=reply.content,
        reasoning=reply.reasoning,
        prompt_version_id=prompt.version_id,
    )
    summary = services.AttemptSummary(number=number, parsed=bool(mapped), correct=correct)
    return stored, state, summary


def _reanswer(ctx: JobContext) -> None:
    """Re-answer until the item settles: one attempt per pass, each stored before the next."""
    models = ctx.alternate_models or [ctx.profile.model]
    # The item's status and attempts were read with the claim, which also found the run running.
    status, attempts, state = ctx.item_status, list(ctx.attempts or []), Run.State.RUNNING
    while not _reanswer_settled(ctx, status=status, attempts=attempts):
        _unparsed_check(ctx, attempts=attempts)
        if state != Run.State.RUNNING:
            raise CallAborted("The run was paused or cancelled")
        stored, state, attempt = _reanswer_attempt(ctx, attempts=attempts, models=models)
        if stored:
            attempts.append(attempt)
        else:
            status, attempts, state = in_db(services.reanswer_state, ctx=ctx)


def _regenerate(ctx: JobContext) -> None:
    prompt = _prompt(Task.REGENERATE, "default", ctx.language)
    messages = prompt.render(
        stem=ctx.stem,
        options=options_text(ctx.options),
        answer=ctx.answer,
        answer_text=ctx.options.get(ctx.answer, ""),
        cot=ctx.cot or "—",
        guidance=ctx.payload.get("guidance", ""),
    )
    reply, call = _call(
        ctx, task=Task.REGENERATE, prompt=prompt, messages=messages, sim_facts={"Key": ctx.answer}
    )
    if not reply.content.strip():
        in_db(services.llm_call_record, profile=ctx.profile, ctx=ctx, call=call)
        raise FatalLLMError("The model returned an empty explanation")
    in_db(
        services.regenerate_apply,
        ctx=ctx,
        call=call,
        cot=reply.content.strip(),
        reasoning=reply.reasoning,
    )


def _judge(ctx: JobContext) -> None:
    from generation.judge import judge_execute

    judge_execute(ctx, call=_call, prompt_for=_prompt)


HANDLERS = {
    Job.Kind.JUDGE: _judge,
    Job.Kind.COT: _cot,
    Job.Kind.EXPAND: _expand,
    Job.Kind.REANSWER: _reanswer,
    Job.Kind.REGENERATE: _regenerate,
}

__all__ = ["LLMError", "job_execute", "reanswer_enqueue", "regenerate_enqueue"]
