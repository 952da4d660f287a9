"""The LLM call log: one row per request, successful or not."""

from __future__ import annotations

from dataclasses import dataclass

from generation.client import ProfileSnapshot, TryRecord
from generation.models import UNUSABLE_PREFIX, LLMCall
from generation.services.jobs import JobContext
from medcot.bulk import insert_row

# -- the call log ---------------------------------------------------------------------------


@dataclass
class CallInfo:
    """A model call to be logged, with the context it was made in."""

    record: TryRecord
    task: str
    messages: list[dict]
    prompt_version_id: int | None


def _call_values(profile: ProfileSnapshot, ctx: JobContext | None, call: CallInfo) -> dict:
    record = call.record
    reply = record.reply
    return {
        "profile_id": profile.id,
        "run_id": ctx.run_id if ctx else None,
        "job_id": ctx.job_id if ctx else None,
        "item_id": ctx.item_id if ctx else None,
        "task": call.task,
        "prompt_version_id": call.prompt_version_id,
        "model": record.model,
        "try_number": record.try_number,
        "outcome": record.outcome,
        "http_status": record.http_status,
        "error": record.error,
        "messages": call.messages,
        "reply": reply.content if reply else "",
        "reasoning": reply.reasoning if reply else "",
        "finish_reason": reply.finish_reason if reply else "",
        "prompt_tokens": reply.prompt_tokens if reply else 0,
        "completion_tokens": reply.completion_tokens if reply else 0,
        "cost": profile.cost(reply.prompt_tokens, reply.completion_tokens) if reply else 0,
        "latency_ms": record.latency_ms,
    }


def unusable_reply_error(reason: str) -> str:
    return UNUSABLE_PREFIX + reason


def llm_call_record(*, profile: ProfileSnapshot, ctx: JobContext | None, call: CallInfo) -> int:
    """Log one HTTP try; returns the new row's id."""
    return insert_row(LLMCall, _call_values(profile, ctx, call))
