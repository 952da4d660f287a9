"""Review's refusals in the API's error shape (medcot/api/errors.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework import exceptions

from review.services.common import ReviewError


@contextmanager
def review_refusals() -> Iterator[None]:
    """A workflow rule a review service enforces becomes the API's 400, in the service's words
    (`details.non_field_errors`), the same message the browser shows."""
    try:
        yield
    except ReviewError as exc:
        raise exceptions.ValidationError({"non_field_errors": exc.messages}) from exc
