"""What the review app may use of generation: the one module it imports (an import-linter
contract in pyproject.toml enforces it; docs/architecture.md).

Review starts model work on items (re-answers after a first pass, a regeneration an expert asks
for), shows the model's re-answer attempts, reads a chain of thought's concluded option with the
same parser, and reports LLM usage next to its own dashboards. Everything else in generation may
change without review noticing.
"""

from __future__ import annotations

from generation.models import JUDGE_DIMENSIONS, JudgeScore, LLMCall, ReanswerAttempt, Run
from generation.parsing import parse_answer
from generation.selectors import latency_percentiles, reanswer_attempts_for_item

__all__ = [
    "JUDGE_DIMENSIONS",
    "JudgeScore",
    "LLMCall",
    "ReanswerAttempt",
    "Run",
    "latency_percentiles",
    "parse_answer",
    "reanswer_attempts_for_item",
    "reanswer_enqueue",
    "regenerate_enqueue",
]


def reanswer_enqueue(*, item_ids: list[int]) -> None:
    """Re-answer items that just entered `reanswering` (dispatched after commit)."""
    # The pipeline pulls in the Celery tasks; importing it only when work starts keeps a page
    # that merely reads review data from loading them.
    from generation.pipeline import reanswer_enqueue as enqueue

    enqueue(item_ids=item_ids)


def regenerate_enqueue(*, item_id: int, guidance: str, actor_id: int | None) -> None:
    """Draft the item's chain of thought again, following an expert's guidance."""
    from generation.pipeline import regenerate_enqueue as enqueue

    enqueue(item_id=item_id, guidance=guidance, actor_id=actor_id)
