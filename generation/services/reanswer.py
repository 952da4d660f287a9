"""Re-answering: attempts without the explanation, and their conclusion."""

from __future__ import annotations

import contextlib

from django.db import connection, transaction

from generation.models import Job, LLMCall, ReanswerAttempt, Run, Stage
from generation.services.calls import CallInfo, _call_values, llm_call_record
from generation.services.common import ACTIVE_JOB_STATES
from generation.services.dispatch import jobs_dispatch_on_commit
from generation.services.jobs import (
    _FINISH_SQL,
    AttemptSummary,
    JobContext,
    _attempts,
    _finish_params,
    job_finish,
    run_state,
)
from generation.services.profiles import profile_default_get
from generation.services.runs import _jobs_add, _run_maybe_finish
from medcot.bulk import insert_row, insert_statement, is_postgres
from medcot.lifecycle import ItemRef, StaleStatus, Status, transition, transition_ctes
from medcot.models import Item

# -- re-answering ---------------------------------------------------------------------------


def reanswer_state(*, ctx: JobContext) -> tuple[str, list[AttemptSummary], str]:
    """The item's status, its attempts so far and the run's state."""
    status = Item.objects.filter(pk=ctx.item_id).values_list("status", flat=True).first() or ""
    return status, _attempts(ctx.item_id), run_state(run_id=ctx.run_id)


def reanswer_attempt_store(*, ctx: JobContext, call: CallInfo, **fields) -> tuple[bool, str]:
    """Log the call and append its attempt, atomically. Returns (stored, run state); not
    stored when this attempt number exists already (a redelivered task raced its twin), in
    which case the call alone is logged and the caller re-reads the state. One statement on
    PostgreSQL: this runs once per model call, 87% of a project's calls."""
    attempt = {"item_id": ctx.item_id, "run_id": ctx.run_id, **fields}
    conflict = ("item", "number")
    if is_postgres():
        call_sql, call_params = insert_statement(LLMCall, _call_values(ctx.profile, ctx, call))
        attempt_sql, attempt_params = insert_statement(
            ReanswerAttempt,
            attempt,
            source="c",
            refs={"llm_call_id": "c.id"},
            on_conflict_do_nothing=conflict,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH c AS ({call_sql}), a AS ({attempt_sql}) "  # noqa: S608 (built from code)
                "SELECT (SELECT count(*) FROM a), (SELECT state FROM generation_run WHERE id = %s)",
                [*call_params, *attempt_params, ctx.run_id],
            )
            stored, state = cursor.fetchone()
        return bool(stored), state or ""
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        attempt_id = insert_row(
            ReanswerAttempt, {**attempt, "llm_call_id": call_id}, on_conflict_do_nothing=conflict
        )
        return attempt_id is not None, run_state(run_id=ctx.run_id)


def reanswer_conclude(*, ctx: JobContext, to: str, reason: str, data: dict) -> None:
    """A correct attempt sends the item to consensus; the last strike sends it to the panel;
    the job ends. One statement on PostgreSQL (the move, its event and the job's end).

    Elsewhere the move and the job's end are two steps: if the worker dies between them, the
    redelivered job finds the item moved and just finishes."""
    data = {**data, "job": ctx.job_id}
    if not is_postgres():
        item = ItemRef(pk=ctx.item_id, project_id=ctx.project_id, status=Status.REANSWERING)
        with contextlib.suppress(StaleStatus):
            transition(item, to, reason=reason, data=data)
        job_finish(job_id=ctx.job_id, ctx=ctx)
        return
    move_sql, move_params = transition_ctes(
        item_id=ctx.item_id,
        project_id=ctx.project_id,
        from_status=Status.REANSWERING,
        to=to,
        reason=reason,
        data=data,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {move_sql}, f AS ({_FINISH_SQL} RETURNING 1) SELECT count(*) FROM f",  # noqa: S608
            [*move_params, *_finish_params(ctx.job_id)],
        )
        (finished,) = cursor.fetchone()
    if finished and not ctx.hands_off:
        _run_maybe_finish(ctx.run_id)


def reanswer_jobs_add(*, item_ids: list[int]) -> list[int]:
    """Attach re-answer jobs to the project's open hands-off run (or open one)."""
    by_project: dict[int, list[int]] = {}
    for item_id, project_id in Item.objects.filter(
        pk__in=item_ids, status=Status.REANSWERING
    ).values_list("pk", "project_id"):
        by_project.setdefault(project_id, []).append(item_id)
    job_ids: list[int] = []
    with transaction.atomic():
        for project_id, ids in by_project.items():
            # The run's row is locked against a pause or cancel meanwhile. NO KEY, as for every
            # lock on a run here: FOR UPDATE would also block the foreign-key check of each
            # call, attempt and job the workers write for the run until this commits.
            run = (
                Run.objects.select_for_update(no_key=True)
                .filter(
                    project_id=project_id,
                    hands_off=True,
                    state__in=[Run.State.RUNNING, Run.State.PAUSED],
                    stage__in=[Stage.ALL, Stage.REANSWER],
                )
                .order_by("-created_at", "-id")
                .first()
            )
            if run is None:
                run = Run.objects.create(
                    project_id=project_id,
                    profile=profile_default_get(),
                    stage=Stage.REANSWER,
                    hands_off=True,
                    message="",
                )
            busy = set(
                Job.objects.filter(
                    item_id__in=ids, kind=Job.Kind.REANSWER, state__in=ACTIVE_JOB_STATES
                ).values_list("item_id", flat=True)
            )
            new_ids = _jobs_add(run, Job.Kind.REANSWER, [i for i in ids if i not in busy])
            if run.state == Run.State.RUNNING:
                job_ids += new_ids
        jobs_dispatch_on_commit(job_ids)
    return job_ids
