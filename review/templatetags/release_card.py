"""Filters of the dataset card template (templates/releases/card.md): plain-text formatting
that does not depend on the interface language, so the card is the same bytes in any locale."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def thousands(value: int) -> str:
    return f"{value:,}"


@register.filter
def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


@register.filter
def num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


@register.filter
def cell(text: object) -> str:
    """Table cells may hold names typed by people: keep them on one line and away from the
    Markdown table syntax."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


@register.filter
def yaml_string(value: str) -> str:
    """A YAML scalar as JSON writes it (JSON strings are valid YAML), ASCII only."""
    return json.dumps(value)


@register.filter
def joined(values) -> str:
    return ", ".join(map(str, values))
