"""Template helpers for the review pages."""

import difflib
import re

import markdown as md
import nh3
from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Whitespace runs, single CJK characters, or runs of anything else: Chinese has no spaces.
TOKEN = re.compile(r"\s+|[\u3000-\u9fff\uff00-\uffef]|[^\s\u3000-\u9fff\uff00-\uffef]+")

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote",
    "ul", "ol", "li", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
    "sup", "sub",
}  # fmt: skip


@register.filter
def safe_markdown(text: str | None) -> SafeString:
    """Markdown to HTML, then sanitised: model and user text is never trusted HTML. Raw HTML in
    the source is escaped by nh3's allow-list (no attributes, no links, no images survive)."""
    html = md.markdown(text or "", extensions=["extra", "sane_lists"], output_format="html")
    return mark_safe(nh3.clean(html, tags=ALLOWED_TAGS, attributes={}, link_rel=None))  # noqa: S308


@register.simple_tag
def text_diff(old: str | None, new: str | None) -> SafeString:
    """A word-level diff (character-level for Chinese) as escaped HTML with <del>/<ins>."""
    old_words = TOKEN.findall(old or "")
    new_words = TOKEN.findall(new or "")
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(escape("".join(old_words[a1:a2])))
            continue
        if a2 > a1:
            parts.append(f"<del>{escape(''.join(old_words[a1:a2]))}</del>")
        if b2 > b1:
            parts.append(f"<ins>{escape(''.join(new_words[b1:b2]))}</ins>")
    return mark_safe("".join(parts))  # noqa: S308


@register.filter
def get_item(mapping, key):
    if mapping is None:
        return None
    return mapping.get(key) if hasattr(mapping, "get") else None
