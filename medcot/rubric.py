"""The rubric guide the experts score with, for readers outside the review app (the machine
judge's prompt). The review app owns the guides and registers its reader here from its
`AppConfig.ready`; the core never imports an app. With no reader registered there is no guide,
and a reader falls back to its own wording."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RubricText:
    introduction: str
    levels: dict[str, dict[str, str]]  # dimension → {"0": …, "1": …, "2": …}
    language: str
    version: int


_reader: Callable[[str], RubricText | None] | None = None


def rubric_reader_register(reader: Callable[[str], RubricText | None]) -> None:
    """Called from the owning app's `AppConfig.ready`."""
    global _reader
    _reader = reader


def rubric_current(language: str) -> RubricText | None:
    """The newest guide in `language` (else the owner's fallback), or None."""
    return _reader(language) if _reader is not None else None
