"""Template helpers for the review pages."""

import difflib
import re
from html import escape as html_escape

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


# A line that starts a list item: "- x", "* x", "+ x", "1. x", "1) x".
LIST_LINE = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+\S")
NUMBERED_PAREN = re.compile(r"^(\s{0,3}\d{1,3})\)(\s)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _list_friendly(text: str) -> str:
    """Markdown as models and people write it: a list straight after a line of text (no blank
    line between) is still a list, and "1)" numbers like "1.". Fenced code is left alone."""
    out: list[str] = []
    fenced = False
    previous = ""
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = NUMBERED_PAREN.sub(r"\1.\2", line)
            starts = LIST_LINE.match(line) is not None
            after_list = LIST_LINE.match(previous) is not None
            # A list starts right after text, or text follows a list without a blank line (an
            # unindented line ends the list rather than joining its last item).
            ends_list = not starts and not line.startswith((" ", "\t"))
            if line.strip() and previous.strip() and starts != after_list and (starts or ends_list):
                out.append("")
        out.append(line)
        previous = line
    return "\n".join(out)


@register.filter
def item_text(text: str | None) -> SafeString:
    """Item text (stem, chain of thought, model replies) as every page shows it: Markdown with
    its line breaks kept (one line per option stays one line) and its lists as lists, then
    sanitised: model and user text is never trusted HTML. Raw HTML in the source is escaped by
    nh3's allow-list (no attributes, no links, no images survive)."""
    # Raw HTML in item text is shown as the text it is ("<script>" reads as written), never
    # dropped silently: escape it before Markdown sees it; nh3 then sanitises the result.
    html = md.markdown(
        _list_friendly(html_escape(text or "", quote=False)),
        extensions=["extra", "sane_lists", "nl2br"],
        output_format="html",
    )
    return mark_safe(nh3.clean(html, tags=ALLOWED_TAGS, attributes={}, link_rel=None))  # noqa: S308


# The earlier name, kept for templates outside the review app.
safe_markdown = register.filter("safe_markdown", item_text)


@register.simple_tag
def model_verdict(version, attempts=None) -> dict:
    """What the model concluded next to the key (see `review.selectors.model_verdict`)."""
    from review.selectors import model_verdict as verdict

    return verdict(version=version, attempts=attempts)


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
