"""Separate a chat reply's reasoning ("thinking") from its visible content.

Servers disagree on where reasoning goes:

- DeepSeek puts it in ``message.reasoning_content``;
- vLLM uses ``message.reasoning`` (newer) or ``message.reasoning_content`` (older);
- many open-weight deployments leave it in the content as ``<think>…</think>``;
- some chat templates open the ``<think>`` tag in the prompt, so the content holds only the
  closing ``</think>`` with the reasoning before it.

``split_reasoning`` accepts an openai ``ChatCompletionMessage`` (extra fields live in
``model_extra`` and are reachable as attributes) or a plain dict, and always returns
``(content, reasoning)`` as stripped strings, never ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["split_reasoning", "split_think_tags"]

_REASONING_FIELDS = ("reasoning_content", "reasoning")
_THINK_BLOCK = re.compile(r"<think(?:ing)?>(.*?)</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)


def _field(message: Any, name: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(name)
    value = getattr(message, name, None)
    if value is None:
        extra = getattr(message, "model_extra", None) or {}
        value = extra.get(name)
    return value


def _as_text(value: Any) -> str:
    """Content may be a string, None, or (in the multi-part format) a list of parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, Mapping):
                parts.append(str(part.get("text") or ""))
            else:
                parts.append(str(getattr(part, "text", "") or ""))
        return "".join(parts)
    return str(value)


def split_think_tags(content: str) -> tuple[str, str]:
    """Pull ``<think>`` reasoning out of a content string: returns (content, reasoning)."""
    reasoning_parts: list[str] = [m.group(1) for m in _THINK_BLOCK.finditer(content)]
    rest = _THINK_BLOCK.sub("", content)

    close = list(_THINK_CLOSE.finditer(rest))
    if close:
        # Only a closing tag: the template opened <think> in the prompt, so everything before
        # the last closing tag is reasoning.
        last = close[-1]
        reasoning_parts.append(_THINK_OPEN.sub("", _THINK_CLOSE.sub("", rest[: last.start()])))
        rest = rest[last.end() :]

    opened = _THINK_OPEN.search(rest)
    if opened:
        # An unclosed <think>: the reply was cut off while still thinking, so it has no answer.
        reasoning_parts.append(rest[opened.end() :])
        rest = rest[: opened.start()]

    reasoning = "\n\n".join(p.strip() for p in reasoning_parts if p.strip())
    return rest.strip(), reasoning


def split_reasoning(message: Any) -> tuple[str, str]:
    """Return ``(content without reasoning, reasoning text)`` for a chat message."""
    if message is None:
        return "", ""
    content, tagged = split_think_tags(_as_text(_field(message, "content")))

    fields: list[str] = []
    for name in _REASONING_FIELDS:
        text = _as_text(_field(message, name)).strip()
        if text and text not in fields:
            fields.append(text)
    reasoning = "\n\n".join([*fields, tagged] if tagged else fields)
    return content, reasoning
