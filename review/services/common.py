"""What the review services share: the error type, settings and small helpers."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError


class ReviewError(ValidationError):
    """A request the workflow refuses, with a message meant for the person who made it."""


def lease_seconds() -> int:
    return int(getattr(settings, "REVIEW_LEASE_SECONDS", 20 * 60))


def undo_seconds() -> int:
    return int(getattr(settings, "REVIEW_UNDO_SECONDS", 20))


def actor_or_none(user):
    return user if user is not None and user.is_authenticated else None


def reanswer_start(*, item_ids: list[int]) -> None:
    """Hand items that just entered `reanswering` to the generation side. It dispatches after
    commit, so inside a rolled-back test transaction nothing runs."""
    from generation.public import reanswer_enqueue

    reanswer_enqueue(item_ids=item_ids)


def regeneration_start(*, item_id: int, guidance: str, actor_id: int | None) -> None:
    from generation.public import regenerate_enqueue

    regenerate_enqueue(item_id=item_id, guidance=guidance, actor_id=actor_id)
