"""Chain-of-thought generation: begin, apply, conclude."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils.translation import gettext_noop

from generation.models import Job
from generation.services.calls import CallInfo, llm_call_record
from generation.services.dispatch import jobs_dispatch_on_commit
from generation.services.jobs import _FINISH_SQL, JobContext, _finish_params, job_finish
from medcot.bulk import insert_statement, is_postgres
from medcot.lifecycle import (
    ItemRef,
    StaleStatus,
    Status,
    transition,
    transition_ctes,
    transition_many,
)
from medcot.models import AuthorKind, Item
from medcot.services import item_version_create

# -- CoT ------------------------------------------------------------------------------------


def cot_begin(*, ctx: JobContext) -> bool:
    """Move an imported seed to `generating`. Returns False when there is nothing to do: the
    seed already carries a CoT (it skips straight to `generated`) or it has moved on."""
    # Status and CoT were read with the claim, a moment ago; the move itself is conditional.
    item = ItemRef(pk=ctx.item_id, project_id=ctx.project_id, status=ctx.item_status)
    if item.status == Status.GENERATING:
        return True
    if item.status != Status.IMPORTED:
        return False
    if ctx.cot.strip():
        with transaction.atomic():
            transition(item, Status.GENERATED, reason=gettext_noop("the seed came with its CoT"))
            _after_generated(ctx, item)
        return False
    try:
        transition(item, Status.GENERATING, data={"job": ctx.job_id})
    except StaleStatus:
        # Another copy of this job began it a moment ago (a job whose lock was lost with its
        # connection can run twice; `cot_apply` stores one CoT): not an error of the item.
        return _status_locked(ctx.item_id) == Status.GENERATING
    return True


def _status_locked(item_id: int) -> str:
    """The item's status, its row locked until the end of the transaction."""
    sql = f"SELECT status FROM {Item._meta.db_table} WHERE id = %s"  # noqa: S608 (from code)
    if connection.features.has_select_for_update:
        sql += " FOR NO KEY UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [item_id])
        row = cursor.fetchone()
    return row[0] if row else ""


def _job_insert(run_id: int, kind: str, item_id: int) -> tuple[str, str, list]:
    """One job's key and its INSERT (returning the id, or nothing when the key exists)."""
    key = f"{run_id}:{kind}:{item_id}"
    sql, params = insert_statement(
        Job,
        {"run_id": run_id, "item_id": item_id, "kind": kind, "key": key, "payload": {}},
        on_conflict_do_nothing=("key",),
    )
    return key, sql, params


def _job_ids_to_send(key: str, inserted_id: int | None) -> list[int]:
    """The job to dispatch after `_job_insert`: the new one, or, when it existed already (a
    redelivered task got here before), that one if still queued."""
    if inserted_id is not None:
        return [inserted_id]
    return list(Job.objects.filter(key=key, state=Job.State.QUEUED).values_list("pk", flat=True))


def _job_add(run_id: int, kind: str, item_id: int) -> list[int]:
    """`_jobs_add` for one job, in one statement when the job is new."""
    key, sql, params = _job_insert(run_id, kind, item_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return _job_ids_to_send(key, row[0] if row else None)


def _after_generated(ctx: JobContext, item: ItemRef) -> None:
    """What follows a seed's CoT: expansion (hands-off runs), or straight to first-pass review
    when the project does not expand."""
    if ctx.expansion_factor <= 1:
        transition_many([item.pk], Status.GENERATED, Status.FIRST_REVIEW)
    elif ctx.hands_off:
        jobs_dispatch_on_commit(_job_add(ctx.run_id, Job.Kind.EXPAND, item.pk))


def cot_apply(
    *,
    ctx: JobContext,
    call: CallInfo,
    cot: str,
    reasoning: str,
    picked: str | None,
    parse_method: str,
) -> bool:
    """Store the CoT as a new version and move the seed to `generated`, in one transaction.
    Returns False (and writes nothing) when a redelivered task finds the work already done."""
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        prompt_version_id = call.prompt_version_id
        if _status_locked(ctx.item_id) != Status.GENERATING:
            return False
        item = ItemRef(pk=ctx.item_id, project_id=ctx.project_id, status=Status.GENERATING)
        item_version_create(
            item=item,
            author_kind=AuthorKind.LLM,
            reason=gettext_noop("chain of thought generated"),
            cot=cot,
            reasoning=reasoning,
            provenance={
                "task": "cot",
                "prompt_version": prompt_version_id,
                "llm_call": call_id,
                "model": ctx.profile.model,
                "profile": ctx.profile.name,
                "picked": picked or "",
                "parse_method": parse_method,
                "matches_key": picked == ctx.answer if picked else None,
                "job": ctx.job_id,
            },
        )
        data = {"job": ctx.job_id, "llm_call": call_id}
        if is_postgres() and ctx.hands_off and ctx.expansion_factor > 1:
            _cot_conclude(ctx, data)
        else:
            transition(item, Status.GENERATED, data=data)
            _after_generated(ctx, item)
            job_finish(job_id=ctx.job_id, ctx=ctx)
    return True


def _cot_conclude(ctx: JobContext, data: dict) -> None:
    """For a hands-off run on PostgreSQL, what ends a CoT in one statement: the seed's move
    to `generated` (its row is locked, so the move happens), its event, its expansion job
    and the end of this job. The same rows as `transition`, `_after_generated` and
    `job_finish`."""
    move_sql, move_params = transition_ctes(
        item_id=ctx.item_id,
        project_id=ctx.project_id,
        from_status=Status.GENERATING,
        to=Status.GENERATED,
        data=data,
    )
    key, job_sql, job_params = _job_insert(ctx.run_id, Job.Kind.EXPAND, ctx.item_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {move_sql}, j AS ({job_sql}), f AS ({_FINISH_SQL}) "  # noqa: S608 (from code)
            "SELECT (SELECT id FROM j)",
            [*move_params, *job_params, *_finish_params(ctx.job_id)],
        )
        (job_id,) = cursor.fetchone()
    jobs_dispatch_on_commit(_job_ids_to_send(key, job_id))
