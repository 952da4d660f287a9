"""What a person reads on a page: text and the attributes browsers show, minus content blocks.

An element with a `lang` attribute (other than <html>) or translate="no" holds content or data
(an item's stem, a username, a file name), not interface text; so do <code>, <kbd>, <pre> and
<samp>. Everything else is interface and must be in the page's language."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

# Names and notations that stay as they are in a Chinese interface.
ALLOWED_WORDS = frozenset(
    {
        "MedCoT",  # the product
        "ICC",  # intraclass correlation; κ and α are not ASCII words
        "Cohen",  # Cohen's κ, as statisticians write it in Chinese too
        "Krippendorff",  # Krippendorff's α
        "Dawid",  # the Dawid–Skene model (review/quality)
        "Skene",
        "Wilson",  # the Wilson score interval
        "JSONL",
        "JSON",
        "CSV",
        "YAML",
        "Markdown",
        "Parquet",
        "ZIP",
        "UTF",  # UTF-8
        "API",
        "URL",
        "CoT",  # beside 思维链 where the short form helps
        "MedQA",
        "MedMCQA",
        "CMMLU",
        "CMExam",
        "Enter",  # key names, as printed on keyboards
        "Esc",
        "Ctrl",
        "SHA",  # SHA-256 checksums
        "OpenAI",
        "OpenAPI",
        # Licence names, as SPDX writes them.
        "CC",
        "BY",
        "SA",
        "NC",
        "ND",
        "MIT",
        "Apache",
        # Field names of the MedQA and MedMCQA file layouts, quoted on the import page.
        "options",
        "cop",
        # Keys and column names a file may carry, quoted on the import page as they are written.
        "data",
        "question",
        "answer",
        "TSV",
        # Terms of the OpenAI-compatible API, as the providers' own documents write them in Chinese.
        "schema",  # JSON schema
        "temperature",
        "Top",  # Top p
        "Base",  # Base URL
        "Web",  # Web 服务器
        "DeepSeek",
        "vLLM",
        "Ollama",
    }
)
SKIPPED_TAGS = {"script", "style", "code", "kbd", "pre", "samp", "template"}
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
SHOWN_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt", "hx-confirm", "data-confirm")
# File names, paths, identifiers, field lists and placeholders ($stem, docs/x.md, v1.0,
# option_a, ,Question,A,B, opa…opd).
CODE_LIKE = re.compile(r"\S*[A-Za-z0-9][/_.$@=:,…][A-Za-z0-9$]\S*|\$\w+|\S*\d\S*")
WORD = re.compile(r"[A-Za-z][A-Za-z'’]*[A-Za-z]")
# str(timedelta): "0:01:48.980052", "2 days, 3:04:05". Durations go through `|duration`.
# (A clock time such as 19:01:09 has a two-digit hour and no microseconds.)
RAW_TIMEDELTA = re.compile(
    r"(?<![\d:])\d:\d\d:\d\d(?:\.\d+)?\b|\b\d+:\d\d:\d\d\.\d{6}\b|\b\d+ days?, \d+:\d\d"
)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.pieces: list[str] = []
        self.html_lang: str | None = None

    @property
    def skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        skip = self.skipping or (
            tag in SKIPPED_TAGS
            or (tag != "html" and "lang" in attributes)
            or attributes.get("translate") == "no"
        )
        if not skip:
            for name in SHOWN_ATTRIBUTES:
                if attributes.get(name):
                    self.pieces.append(attributes[name])
            if tag == "input" and attributes.get("type") in {"submit", "button"}:
                self.pieces.append(attributes.get("value") or "")
        if tag not in VOID_TAGS:
            self.stack.append((tag, skip))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data):
        if not self.skipping and data.strip():
            self.pieces.append(data)


def html_text(html: str) -> tuple[list[str], str | None]:
    """The interface text pieces of an HTML page or fragment, and its <html lang> if any."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.pieces, collector.html_lang


def json_text(body) -> list[str]:
    """The human-readable strings of an API error body: its message and the field errors."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    found = [str(error.get("message") or "")]

    def walk(value):
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(error.get("details"))
    return found


def english_words(text: str, data: tuple[str, ...] = ()) -> list[str]:
    for value in data:
        text = text.replace(value, " ")
    text = CODE_LIKE.sub(" ", text)
    return [w for w in WORD.findall(text) if w not in ALLOWED_WORDS]


def untranslated(response, data: tuple[str, ...] = ()) -> tuple[list[str], str | None]:
    """(The English words a person would read, the page's <html lang>) of a response. `data`
    holds values people entered (names of LLM endpoints and models, version notes): they are
    shown as written, whatever the interface language."""
    content_type = response.get("Content-Type", "")
    if "json" in content_type:
        try:
            body = json.loads(response.content)
        except ValueError:
            return [], None
        pieces, lang = json_text(body), None
    elif "html" in content_type:
        pieces, lang = html_text(response.content.decode("utf-8"))
    else:
        return [], None
    words = []
    for piece in pieces:
        if RAW_TIMEDELTA.search(piece):
            words.append(f"{' '.join(piece.split())[:120]!r} → a raw timedelta (use |duration)")
        found = english_words(piece, data)
        if found:
            words.append(f"{' '.join(piece.split())[:120]!r} → {found}")
    return words, lang
