"""Versioned prompt templates.

The defaults live in files next to this module, `<language>/<task>.<variant>.txt`, with a
`[system]` and a `[user]` section and `$name` placeholders (so the JSON braces in the
synthesis prompt need no escaping). The database holds the versions: the first use of a
prompt, or a change to its file, appends a version from the file; an admin's edit appends one
too. The newest version of (task, variant, language) is the one in use, and every output
records the version that made it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from django.db import IntegrityError, transaction

from generation.models import PromptVersion, Task

PROMPT_DIR = Path(__file__).resolve().parent
LANGUAGES = ("en", "zh")

# Re-answer variants in the order attempts rotate through them. "strict" is reserved for the
# retry after an unparseable reply.
REANSWER_VARIANTS = ("direct", "stepwise", "elimination", "exam")
STRICT = "strict"

_CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str, str], tuple[float, Prompt]] = {}
_cache_lock = threading.Lock()


class PromptError(Exception):
    """A prompt file is missing or malformed."""


@dataclass(frozen=True)
class Prompt:
    """A snapshot of one prompt version, safe to use away from the database."""

    version_id: int
    label: str
    system: str
    template: str

    def render(self, **values: object) -> list[dict[str, str]]:
        text = {key: str(value) for key, value in values.items()}
        messages = []
        if self.system.strip():
            messages.append(
                {"role": "system", "content": Template(self.system).safe_substitute(text)}
            )
        messages.append({"role": "user", "content": Template(self.template).safe_substitute(text)})
        return messages


def split_sections(text: str) -> tuple[str, str]:
    """Split a prompt file into its system and user parts."""
    if "[user]" not in text:
        raise PromptError("A prompt needs a [user] section")
    head, user = text.split("[user]", 1)
    system = head.split("[system]", 1)[1] if "[system]" in head else ""
    if not user.strip():
        raise PromptError("The [user] section is empty")
    return system.strip(), user.strip() + "\n"


def default_files() -> list[tuple[str, str, str, Path]]:
    """Every default prompt file as (task, variant, language, path)."""
    found = []
    for language in LANGUAGES:
        for path in sorted((PROMPT_DIR / language).glob("*.txt")):
            task, _, variant = path.stem.partition(".")
            if task in Task.values and variant:
                found.append((task, variant, language, path))
    return found


def _file_for(task: str, variant: str, language: str) -> Path:
    path = PROMPT_DIR / language / f"{task}.{variant}.txt"
    if not path.exists():
        raise PromptError(f"No default prompt file {language}/{task}.{variant}.txt")
    return path


def prompt_version_current(*, task: str, variant: str, language: str) -> PromptVersion:
    """The version in use, appending one from the default file when the file is new or
    changed since its last file version (an admin's newer edit still wins)."""
    language = language if language in LANGUAGES else "en"
    newest = (
        PromptVersion.objects.filter(task=task, variant=variant, language=language)
        .order_by("-number")
        .first()
    )
    if newest is not None and newest.source == PromptVersion.Source.ADMIN:
        return newest
    path = _file_for(task, variant, language)
    raw = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(raw.encode()).hexdigest()
    if newest is not None and newest.digest == digest:
        return newest
    system, template = split_sections(raw)
    try:
        with transaction.atomic():
            return PromptVersion.objects.create(
                task=task,
                variant=variant,
                language=language,
                number=(newest.number + 1) if newest else 1,
                system=system,
                template=template,
                source=PromptVersion.Source.FILE,
                digest=digest,
                note=f"{language}/{path.name}",
            )
    except IntegrityError:
        # Another worker appended the same version first.
        return (
            PromptVersion.objects.filter(task=task, variant=variant, language=language)
            .order_by("-number")
            .first()
        )


def prompt_cached(*, task: str, variant: str, language: str) -> Prompt | None:
    """The cached prompt if it is fresh, else None; never touches the database."""
    with _cache_lock:
        hit = _cache.get((task, variant, language))
    if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
        return hit[1]
    return None


def prompt_get(*, task: str, variant: str, language: str) -> Prompt:
    """The current prompt as a snapshot, cached briefly per process (one query per 30 s, not
    one per call). Must run where the database is reachable."""
    cached = prompt_cached(task=task, variant=variant, language=language)
    if cached is not None:
        return cached
    now = time.monotonic()
    version = prompt_version_current(task=task, variant=variant, language=language)
    prompt = Prompt(
        version_id=version.pk, label=version.label, system=version.system, template=version.template
    )
    with _cache_lock:
        _cache[(task, variant, language)] = (now, prompt)
    return prompt


def prompt_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def prompt_version_edit(
    *, task: str, variant: str, language: str, system: str, template: str, actor, note: str = ""
) -> PromptVersion:
    """Append an admin-edited version; it is used from the next call on."""
    if not template.strip():
        raise PromptError("The prompt template cannot be empty")
    with transaction.atomic():
        newest = (
            PromptVersion.objects.select_for_update()
            .filter(task=task, variant=variant, language=language)
            .order_by("-number")
            .first()
        )
        version = PromptVersion.objects.create(
            task=task,
            variant=variant,
            language=language,
            number=(newest.number + 1) if newest else 1,
            system=system.strip(),
            template=template.strip() + "\n",
            source=PromptVersion.Source.ADMIN,
            note=note[:300],
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
    prompt_cache_clear()
    return version


def options_text(options: dict[str, str]) -> str:
    return "\n".join(f"{label}. {text}" for label, text in options.items())
