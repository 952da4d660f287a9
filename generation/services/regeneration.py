"""Guided regeneration: an expert's guidance, a new chain of thought."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from generation.models import Job, Run, Stage
from generation.services.calls import CallInfo, llm_call_record
from generation.services.common import GenerationError
from generation.services.dispatch import jobs_dispatch_on_commit
from generation.services.jobs import JobContext, job_finish
from generation.services.profiles import profile_default_get
from medcot.lifecycle import Status
from medcot.models import AuthorKind, Event, Item
from medcot.services import item_version_create

# -- guided regeneration --------------------------------------------------------------------


def regenerate_job_create(*, item_id: int, guidance: str, actor_id: int | None) -> Job:
    import uuid

    guidance = guidance.strip()
    if not guidance:
        raise GenerationError(_("Guided regeneration needs the experts' comments"))
    with transaction.atomic():
        item = Item.objects.get(pk=item_id)
        if item.status != Status.PANEL_REVIEW:
            raise GenerationError(_("Only an item under panel review can be regenerated"))
        run = (
            Run.objects.filter(
                project_id=item.project_id,
                stage=Stage.REANSWER,
                hands_off=True,
                state=Run.State.RUNNING,
            )
            .order_by("-created_at", "-id")
            .first()
        ) or Run.objects.create(
            project_id=item.project_id,
            profile=profile_default_get(),
            stage=Stage.REANSWER,
            hands_off=True,
        )
        job = Job.objects.create(
            run=run,
            item=item,
            kind=Job.Kind.REGENERATE,
            key=f"regen:{uuid.uuid4().hex}",
            payload={"guidance": guidance, "actor_id": actor_id},
        )
        jobs_dispatch_on_commit([job.pk])
    return job


def regenerate_apply(*, ctx: JobContext, call: CallInfo, cot: str, reasoning: str) -> bool:
    model = call.record.model
    prompt_version_id = call.prompt_version_id
    with transaction.atomic():
        call_id = llm_call_record(profile=ctx.profile, ctx=ctx, call=call)
        job = Job.objects.select_for_update(no_key=True).get(pk=ctx.job_id)
        item = Item.objects.get(pk=ctx.item_id)
        # The version records its job, so even a job whose state was lost cannot add a second.
        if job.state != Job.State.RUNNING or item.versions.filter(provenance__job=job.pk).exists():
            job_finish(job_id=ctx.job_id, ctx=ctx)
            return False
        actor_id = ctx.payload.get("actor_id")
        version = item_version_create(
            item=item,
            author_kind=AuthorKind.LLM_GUIDED,
            reason=gettext_noop("CoT regenerated with the panel's guidance"),
            cot=cot,
            reasoning=reasoning,
            marks_modified=True,
            provenance={
                "task": "regenerate",
                "prompt_version": prompt_version_id,
                "llm_call": call_id,
                "model": model,
                "profile": ctx.profile.name,
                "guidance": ctx.payload.get("guidance", ""),
                "job": ctx.job_id,
            },
        )
        Event.objects.create(
            project_id=item.project_id,
            item=item,
            actor_id=actor_id,
            kind="regenerated",
            reason=ctx.payload.get("guidance", "")[:2000],
            data={"version": version.number, "llm_call": call_id, "job": ctx.job_id},
        )
        job_finish(job_id=ctx.job_id, ctx=ctx)
    return True
