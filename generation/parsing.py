"""Read answers out of free-text model replies, and questions out of synthesis replies.

``parse_answer`` looks for *explicit conclusions* (``\\boxed{C}``, "The answer is (C)",
"Answer: C", "答案：C", "正确答案是C项", "故选C", a JSON ``{"answer": "C"}``, or an option's text
after such a phrase) and takes the **last** one, because long replies discuss every option before
concluding and sometimes change their mind. Then, in order, it falls back to per-option verdicts
("C is correct", "C项正确"; exactly one letter must be so named), conclusions inside a
conditional clause ("If she were pregnant, the answer would be D"), a bare reply ("C",
"C. Aspirin"), or a reply that is just an option's text. A conclusion that names two letters
("A or B") is ambiguous.

An option's text may stand for its letter inside a concluding sentence ("I would choose
Lactated ringer.", "我选择社区获得性肺炎。", "Warfarin is the best choice"). It counts only where
the sentence does not set it aside ("not X", "rather than X", "排除X", "不是X"), and an option
whose text lies inside another named option's text ("Vitamin B12" in "Vitamin B12
deficiency") gives way to the longer one; two options named alike is no answer.

Whatever cannot be read returns
``ParsedAnswer(letter=None, method="unparseable", ok=False)``: callers record it as unparseable,
never as a wrong answer.

Methods reported: ``json``, ``boxed``, ``explicit``, ``option_text``, ``verdict``, ``bare``,
``unparseable``.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SYNTHESIS_SCHEMA",
    "SYNTHESIS_SCHEMA_NAME",
    "ParsedAnswer",
    "ReplyFormatError",
    "SynthesisParse",
    "parse_answer",
    "parse_synthesized",
    "parse_synthesized_detailed",
]

UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class ParsedAnswer:
    letter: str | None
    method: str
    ok: bool


_FAILED = ParsedAnswer(letter=None, method=UNPARSEABLE, ok=False)


@dataclass(frozen=True)
class _Hit:
    pos: int
    method: str
    letters: frozenset[str]


# --- normalisation ------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_LATEX_WRAPPER = re.compile(
    r"\\(?:text|textbf|mathrm|mathbf|textrm|mbox|operatorname)\s*\{([^{}]*)\}"
)


def _normalise(text: str) -> str:
    # NFKC folds full-width letters and punctuation (Ｃ，：（）) that Chinese replies use.
    text = unicodedata.normalize("NFKC", text)
    text = _THINK_BLOCK.sub(" ", text)
    close = list(_THINK_CLOSE.finditer(text))
    if close:
        text = text[close[-1].end() :]
    unclosed = _THINK_OPEN.search(text)
    if unclosed:
        # The reply was cut off while still thinking: nothing after <think> is a conclusion.
        text = text[: unclosed.start()]
    # Markdown emphasis and code marks sit between markers and letters ("**Answer:** C").
    return text.replace("*", "").replace("`", "")


def _fold(text: str) -> str:
    """Compare option texts ignoring case, spacing and punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


# --- option-text matching -----------------------------------------------------------------------


def _match_option_text(span: str, options: Mapping[str, str]) -> str | None:
    """The label whose text the span names exactly, starts with, or nearly equals; else None."""
    folded_span = _fold(span)
    if not folded_span:
        return None
    folded = {label: _fold(text) for label, text in options.items() if _fold(text)}
    exact = [label for label, text in folded.items() if text == folded_span]
    if len(exact) == 1:
        return exact[0]
    # "Aspirin, because it inhibits…": the span starts with an option's text. Prefer the longest
    # such text so "Vitamin B12 deficiency" beats "Vitamin B12".
    prefixed = [(len(t), label) for label, t in folded.items() if folded_span.startswith(t)]
    prefixed = [p for p in prefixed if p[0] >= 2]
    if prefixed:
        prefixed.sort(reverse=True)
        if len(prefixed) == 1 or prefixed[0][0] > prefixed[1][0]:
            return prefixed[0][1]
        return None
    scored = sorted(
        (
            (difflib.SequenceMatcher(None, folded_span, t).ratio(), label)
            for label, t in folded.items()
        ),
        reverse=True,
    )
    if scored and scored[0][0] >= 0.85 and (len(scored) == 1 or scored[1][0] < 0.85):
        return scored[0][1]
    return None


# Words that, just before an option's text, say the sentence sets it aside: "not X", "rather
# than X", "rule out X", "排除X", "不是X", "而非X". Checked on the folded text that precedes the
# option inside its sentence, so "I would choose A rather than B" names A only.
_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|n't|\bno|\bnever|\bneither|\bnor|rather\s+than|instead\s+of|other\s+than|"
    r"\bover|\bversus|\bvs|\bexcept|\bexcluding|\bexclude[sd]?|rul(?:e|ed|ing)\s+out|"
    r"\bunlike|\bagainst|\bwithout|\bavoid|"
    r"排除|除外|不是|并非|而非|而不是|不考虑|不选|不应|不宜|非|否定|不|除了|不能选)"
    r"[\s,:;\-–—()（）“”\"'`]*(?:the\s+|a\s+|an\s+|option\s+|选项)?$",
    re.IGNORECASE,
)
# …and words just after it that do the same: "X is wrong", "X is not correct", "X不正确", "X可排除".
_NEGATED_AFTER = re.compile(
    r"^\s*(?:(?:is|are|was|would\s+be|seems|seems\s+to\s+be)\s+(?:not\b|unlikely|wrong|"
    r"incorrect|ruled\s+out|excluded|inappropriate|contraindicated)|(?:is|are|was)n[’']t\b|"
    r"(?:can|should|must)\s+be\s+(?:ruled\s+out|excluded))"
    r"|^\s*(?:项)?\s*(?:不正确|错误|可排除|可以排除|被排除|除外|不对|不符合|不考虑|不是|不能|不宜)",
    re.IGNORECASE,
)


def _folded_index(text: str) -> tuple[str, list[int]]:
    """The text folded as `_fold` does, and for each folded character its index in `text`."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for out in unicodedata.normalize("NFKC", ch).casefold():
            if out.isalnum():
                chars.append(out)
                where.append(i)
    return "".join(chars), where


def _latin_joined(left: str, right: str) -> bool:
    """Whether two adjacent characters belong to one Latin-script word."""
    return left.isascii() and right.isascii() and left.isalnum() and right.isalnum()


def _match_option_in_sentence(sentence: str, options: Mapping[str, str]) -> str | None:
    """The one option whose text the sentence names and does not set aside, else None."""
    named, negated = _options_named(sentence, options)
    named -= negated
    return next(iter(named)) if len(named) == 1 else None


# "X or Y", "X and Y", "X或Y": a conclusion that names an alternative names no single option.
_ALTERNATIVE = re.compile(r"^[\s,，]*(?:or|and|/|或者?|还是|和|与|及|、)", re.IGNORECASE)


def _text_match_checked(span: str, options: Mapping[str, str]) -> str | None:
    """`_match_option_text`, refused when the span sets that option aside ("排除X", "X is not
    indicated") or offers another beside it ("X or Y")."""
    label = _match_option_text(span, options)
    if label is None:
        return None
    named, negated = _options_named(span, options)
    if label in negated:
        return None
    if len(named - {label}) and _ALTERNATIVE.search(_after_option(span, options[label])):
        return None
    return label


def _after_option(span: str, option_text: str) -> str:
    """The span after the first occurrence of the option's text (compared folded)."""
    folded, where = _folded_index(span)
    start = folded.find(_fold(option_text))
    if start == -1 or not where:
        return ""
    return span[where[start + len(_fold(option_text)) - 1] + 1 :]


def _options_named(sentence: str, options: Mapping[str, str]) -> tuple[set[str], set[str]]:
    """The options the sentence names, and those of them it sets aside.

    Every occurrence of every option's (folded) text is found; an occurrence lying inside a
    longer option's occurrence is dropped ("Vitamin B12" inside "Vitamin B12 deficiency"); one
    the sentence negates just before or just after it is set aside."""
    folded, where = _folded_index(sentence)
    if not folded:
        return set(), set()
    found: list[tuple[int, int, str]] = []
    for label, text in options.items():
        target = _fold(text)
        # Very short option texts ("C", "IV", "是") occur by chance inside other words.
        if len(target) < 3 and not any("\u3400" <= ch <= "\u9fff" for ch in target):
            continue
        if len(target) < 2:
            continue
        start = folded.find(target)
        while start != -1:
            found.append((start, start + len(target), label))
            start = folded.find(target, start + 1)
    if not found:
        return set(), set()
    kept = [
        (s, e, label)
        for s, e, label in found
        if not any((s2 <= s and e <= e2) and (e2 - s2) > (e - s) for s2, e2, _l in found)
    ]
    named: set[str] = set()
    negated: set[str] = set()
    for s, e, label in kept:
        begin = where[s]
        end = where[e - 1] + 1
        # The word must start and end at word boundaries in the original text (Latin script):
        # "aspirin" must not be read out of "aspirinate".
        if begin > 0 and _latin_joined(sentence[begin - 1], sentence[begin]):
            continue
        if end < len(sentence) and _latin_joined(sentence[end - 1], sentence[end]):
            continue
        before = sentence[max(0, begin - 40) : begin]
        after = sentence[end : end + 30]
        named.add(label)
        if _NEGATED_BEFORE.search(before) or _NEGATED_AFTER.search(after):
            negated.add(label)
    return named, negated


# --- patterns -----------------------------------------------------------------------------------


# What may not follow a letter for it to be an option label: more of a word ("Aspirin"),
# "B-cell", "A's", or the Chinese medical terms that start with a Latin letter (A型, B超, C反应蛋白,
# X线, B族维生素, A组链球菌).
_NOT_A_LABEL = (
    r"(?![A-Za-z0-9]|-[A-Za-z]|'s\b"
    r"|型|超|族|组|类|级|期|线|受体|反应|蛋白|细胞|链球菌|淋巴|因子|波|段)"
)


def _letter_group(labels: Iterable[str]) -> str:
    # Case-sensitive letters inside case-insensitive patterns: "the answer is a drug" must not
    # read as option A.
    return "(?-i:([" + "".join(sorted(labels)) + "]))" + _NOT_A_LABEL


_OPEN = r"[\s(\[{（【「]*"
_CLOSE = r"[\s)\]}）】」]*"
_MULTI = r"\s*(?:or|and|/|&|,|或者?|还是|和|与|及|、)\s*(?:option\s*|选项)?[(\[]?"

# Phrases after which a reply states its conclusion, each ending where the letter begins. The
# flag says whether an option's text may stand in for the letter after it.
_EXPLICIT_MARKERS: list[tuple[str, bool]] = [
    # English: "The answer is (C)", "Final answer: C", "correct option would be C".
    (
        r"\b(?:(?:final|correct|right|best|most\s+(?:likely|appropriate))\s+)?"
        r"(?<!incorrect\s)(?<!wrong\s)(?<!not\s)(?:answer|ans|option|choice|response)s?\s*"
        r"(?:is|would\s+be|should\s+be|will\s+be|must\s+be|=|:|-|–|—)\s*(?:is\s*)?:?\s*"
        r"(?:option|choice|letter)?\s*",
        True,
    ),
    # "The most likely diagnosis is C", "the best next step would be option B".
    (
        r"\b(?:most\s+(?:likely|appropriate|accurate|suitable)|best|correct)\s+[a-z]+"
        r"(?:\s+[a-z]+)?\s+(?:is|would\s+be)\s+(?:option\s+|choice\s+)?",
        True,
    ),
    (r"\banswer\s*(?=\(?[A-Z]\)?(?:[\s.,;:)]|$))", False),
    (
        # "I would choose C" counts; "some might choose A" and "do not pick A" do not.
        r"\b(?:I\s+(?:would|will|'d|’d)\s+|I\s+|(?<!might\s)(?<!could\s)(?<!may\s)"
        r"(?<!not\s)(?<!n't\s)(?<!to\s)(?<!would\s)(?<!often\s))"
        r"(?:choose|pick|select|go\s+with|opt\s+for)\s+"
        r"(?:option|choice|answer)?\s*",
        True,
    ),
    # "I think it's lactated ringer", "It is most likely community-acquired pneumonia".
    (
        r"\bI\s+(?:think|believe|would\s+say|'d\s+say|’d\s+say)\s+(?:that\s+)?"
        r"(?:it(?:'s|’s|\s+is)|this\s+is|the\s+answer\s+is)\s*",
        True,
    ),
    (r"\b(?:it(?:'s|’s|\s+is)|this\s+is)\s+most\s+(?:likely|probably)\s*", True),
    # Chinese: "答案：C", "正确答案是C项", "答案应为C", "本题答案为：C".
    (
        r"答案\s*[】\]」]?\s*(?:应该|应当|应|当|就)?\s*(?:是|为|选)?\s*[:=]?\s*(?:选项|选)?\s*",
        True,
    ),
    # "答：C", the short form of answer keys.
    (r"(?<![回解])答\s*:\s*", False),
    # "正确选项为C", "正确的是C", "最可能的诊断是C".
    (r"选项\s*(?:应该|应当|应)?\s*(?:是|为|:)\s*:?\s*", True),
    (r"(?<!不)正确的?(?:选项|答案)?\s*(?:应该|应)?\s*(?:是|为)\s*:?\s*", True),
    (r"最(?:可能|合适|恰当|佳|适宜)的?\S{0,6}?(?:是|为)\s*:?\s*(?:选项)?\s*", True),
    # "故选C", "应选择C", "选C项", "我选择社区获得性肺炎"; not "选择性…" (selective).
    (r"(?<![不未别勿可误易若如])选择?(?!项|择题|性)\s*:?\s*", True),
    # "我认为是华法林", "应该是社区获得性肺炎", "考虑为肺炎", "首选华法林".
    (r"我(?:认为|觉得|倾向于?|判断)\s*(?:应该|应当|应)?\s*(?:是|为|选)?\s*", True),
    (r"(?<![不也])(?:应该|应当)\s*(?:是|为)\s*", True),
    (r"(?<!不)考虑\s*(?:为|是)\s*", True),
    (r"(?<![不非])首选\s*(?:为|是)?\s*", True),
]
# An option's text before a verdict on it: "Lactated ringer is the best choice", "Warfarin
# would be most appropriate", "华法林是正确答案", "社区获得性肺炎最符合题意". The option is looked
# for in the clause before the verdict.
_TEXT_FIRST = [
    r"\b(?:is|would\s+be|seems\s+to\s+be)\s+(?:the\s+)?(?:correct|right|best|most\s+"
    r"(?:likely|appropriate|suitable|consistent))\b(?!\s+(?:only|if|when|in\s+(?:a|an|the)\b))",
    r"\b(?:is|would\s+be)\s+the\s+(?:answer|treatment\s+of\s+choice|drug\s+of\s+choice)\b"
    r"(?!\s+(?:only|if|when))",
    r"(?:是|为)\s*(?:本题的?)?\s*(?:正确答案|最佳答案|最佳选择|最佳选项|首选|正确选项)|最符合(?:题意|题干)?",
]
_CLAUSE_START = re.compile(r"[.。;；!！?？\n,，:：]")
# Letter-first conclusions: "C is the correct answer", "C为正确答案".
_LETTER_FIRST = [
    r"(?:option\s+|choice\s+)?\(?{L}\)?\s*(?:\([^)\n]{{0,60}}\)\s*)?(?:is|would\s+be)\s+"
    r"(?:the\s+)?(?:correct\s+|right\s+|best\s+)?(?:answer|choice)\b(?!\s+(?:if|only|when))",
    r"{L}\s*(?:项|选项)?\s*(?:是|为)\s*(?:正确|最佳)?答案",
]
_THEREFORE = r"\b(?:therefore|thus|hence|so)\s*,?\s*(?:option\s+)?"

# Per-option verdicts, a weaker signal used only when nothing explicit exists.
_VERDICT_PATTERNS = [
    r"(?:option\s+|choice\s+)?\(?{L}\)?\s*(?:\([^)\n]{{0,60}}\)\s*)?(?:is|would\s+be)\s+"
    r"(?:the\s+)?(?:correct|right|best)(?:\s+(?:answer|option|choice|response))?\b"
    r"(?!\s+(?:only|if|when|in|for))",
    r"(?m)^\s*(?:option\s+)?\(?{L}\)?[.:)]?[^\n]{{0,80}}?[-–—:]\s*(?<!in)correct\b",
    # "Warfarin (option C) is the treatment of choice".
    r"\((?:option|choice)\s+{L}\)\s+(?:is|would\s+be)\s+(?:the\s+)?"
    r"(?:correct|right|best|most|answer|[a-z]+\s+of\s+choice)",
    r"{L}\s*(?:项|选项)?\s*[.:、]?\s*(?:是|为)?\s*(?:正确|正确答案|最佳答案|最佳选项|符合题意)",
    r"(?m)^\s*(?:选项\s*)?\(?{L}\)?\s*(?:项)?[.:、)]?[^\n]{{0,40}}?[:,]\s*(?:正确|为正确答案)",
]
# "B and C are correct", "A、B均正确": several options declared right at once.
_PLURAL_VERDICT = (
    r"{L}(?:\s*(?:,|and|or|和|与|及|、|或)\s*(?:option\s+)?{L})+\s*"
    r"(?:are|were|均|都|皆)\s*(?:both\s+|all\s+)?(?:correct|right|正确)"
)


def _expand(pattern: str, letter: str) -> str:
    return pattern.replace("{L}", letter).replace("{{", "{").replace("}}", "}")


class _Patterns:
    def __init__(self, labels: frozenset[str]) -> None:
        letter = _letter_group(labels)
        flags = re.IGNORECASE
        self.explicit = [
            re.compile(m + _OPEN + letter + _CLOSE + r"(?:项|选项)?", flags)
            for m, _text in _EXPLICIT_MARKERS
        ] + [re.compile(_expand(p, letter), flags) for p in _LETTER_FIRST]
        self.explicit_span = [
            re.compile(m + r"([^\n.。;；!！?？]{1,120})", flags)
            for m, text_ok in _EXPLICIT_MARKERS
            if text_ok
        ]
        self.text_first = [re.compile(p, flags) for p in _TEXT_FIRST]
        self.therefore = re.compile(
            _THEREFORE + _OPEN + letter + _CLOSE + r"(?=[.!。]|$)", flags | re.MULTILINE
        )
        self.multi = re.compile(_MULTI + letter, flags)
        self.verdicts = [re.compile(_expand(p, letter), flags) for p in _VERDICT_PATTERNS]
        plain = "(?-i:[" + "".join(sorted(labels)) + "])" + _NOT_A_LABEL
        self.plural_verdict = re.compile(_PLURAL_VERDICT.replace("{L}", plain), flags)
        self.any_letter = re.compile(r"(?<![A-Za-z0-9])" + plain)
        self.bare = re.compile(
            r"^\s*(?:option\s+|选项\s*)?" + _OPEN + letter + r"[\s)\]}）】.:、,]*(.*)$",
            flags | re.DOTALL,
        )


_pattern_cache: dict[frozenset[str], _Patterns] = {}


def _patterns(labels: frozenset[str]) -> _Patterns:
    cached = _pattern_cache.get(labels)
    if cached is None:
        cached = _pattern_cache[labels] = _Patterns(labels)
    return cached


def _letters_at(match: re.Match[str], text: str, pats: _Patterns) -> frozenset[str]:
    """The letter a conclusion names, plus any it joins with "or"/"和" ("A or B")."""
    letters = {match.group(1)}
    end = match.end(1)
    while True:
        tail = pats.multi.match(text, end)
        if tail is None:
            break
        letters.add(tail.group(1))
        end = tail.end(1)
    return frozenset(letters)


# --- structured sources -------------------------------------------------------------------------


def _balanced_braces(text: str, start: int) -> int | None:
    """Index just past the brace group opening at text[start] ('{'), or None."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _boxed_hits(text: str, options: Mapping[str, str], pats: _Patterns) -> list[_Hit]:
    hits = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        end = _balanced_braces(text, m.end() - 1)
        if end is None:
            continue
        inner = text[m.end() : end - 1]
        for _ in range(3):
            inner = _LATEX_WRAPPER.sub(r"\1", inner)
        inner = inner.replace("\\", " ").strip()
        letters = _letters_in_value(inner, options, pats)
        if letters:
            hits.append(_Hit(m.start(), "boxed", letters))
    return hits


def _letters_in_value(value: str, options: Mapping[str, str], pats: _Patterns) -> frozenset[str]:
    """Letters named by a short answer value: "C", "(C)", "C. Aspirin", "A, B", or "Aspirin"."""
    bare = pats.bare.match(value)
    if bare:
        letters = _letters_at(bare, value, pats)
        if len(letters) > 1:
            return letters
        label = bare.group(1)
        after = value[bare.end(1) :]
        rest = bare.group(2).strip()
        # "C", "C.", "(C) Aspirin", "C: Aspirin" name C; "A drug that…" is prose, not a letter.
        if not rest or after[:1] in ".:)）】]、,;" or after.lstrip()[:1] in "-–—(（":
            return letters
        if _match_option_text(rest, {label: options.get(label, "")}):
            return letters
    label = _match_option_text(value, options)
    return frozenset({label}) if label else frozenset()


# Only where JSON can start: a failed raw_decode counts lines up to the failure, so trying
# every brace of a long LaTeX-laden reply would take quadratic time.
_JSON_START = re.compile(r'\{\s*"|\[\s*\{')

_JSON_KEYS = ("answer", "final_answer", "finalanswer", "correct_answer", "choice", "option", "答案")


def _json_hits(text: str, options: Mapping[str, str], pats: _Patterns) -> list[_Hit]:
    hits = []
    decoder = json.JSONDecoder()
    for start in _JSON_START.finditer(text):
        i = start.start()
        try:
            obj, _end = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(obj, dict):
            lowered = {str(k).casefold(): v for k, v in obj.items()}
            for key in _JSON_KEYS:
                value = lowered.get(key)
                if isinstance(value, str) and value.strip():
                    letters = _letters_in_value(value.strip(), options, pats)
                    if letters:
                        hits.append(_Hit(i, "json", letters))
                    break
    return hits


# --- parse_answer -------------------------------------------------------------------------------


_NEGATION = re.compile(r"\s*(?:not\b|never\b|no\b|neither\b|不|非|并非|没有)", re.IGNORECASE)


_CLAUSE_END = re.compile(r"[.。!！?？;；\n]")
_CONDITIONAL = re.compile(r"\b(?:if|unless|were)\b|如果|假如|假设|若", re.IGNORECASE)


def _hypothetical(text: str, pos: int) -> bool:
    """Whether the clause holding a conclusion is conditional ("If she were pregnant, the
    answer would be D")."""
    ends = [m.end() for m in _CLAUSE_END.finditer(text, max(0, pos - 200), pos)]
    clause = text[ends[-1] if ends else max(0, pos - 200) : pos]
    return bool(_CONDITIONAL.search(clause))


def _explicit_hits(
    text: str, options: Mapping[str, str], pats: _Patterns
) -> tuple[list[_Hit], list[_Hit]]:
    """Explicit conclusions, split into (firm, hypothetical)."""
    hits: list[_Hit] = []
    letter_spans: list[tuple[int, int]] = []
    for pattern in [*pats.explicit, pats.therefore]:
        for m in pattern.finditer(text):
            hits.append(_Hit(m.start(), "explicit", _letters_at(m, text, pats)))
            letter_spans.append((m.start(), m.end()))
    for pattern in pats.explicit_span:
        for m in pattern.finditer(text):
            if any(s <= m.start() < e for s, e in letter_spans) or _NEGATION.match(m.group(1)):
                continue
            # The span names the option exactly or starts with it; failing that, the option
            # is named somewhere in the rest of the sentence ("I would choose to give
            # lactated ringer now").
            label = _text_match_checked(m.group(1), options) or _match_option_in_sentence(
                m.group(1), options
            )
            if label:
                hits.append(_Hit(m.start(), "option_text", frozenset({label})))
    for pattern in pats.text_first:
        for m in pattern.finditer(text):
            if any(s <= m.start() < e for s, e in letter_spans):
                continue
            starts = [
                c.end() for c in _CLAUSE_START.finditer(text, max(0, m.start() - 160), m.start())
            ]
            begin = starts[-1] if starts else max(0, m.start() - 160)
            label = _match_option_in_sentence(text[begin : m.start()], options)
            if label:
                hits.append(_Hit(begin, "option_text", frozenset({label})))
    firm = [h for h in hits if not _hypothetical(text, h.pos)]
    return firm, [h for h in hits if h not in firm]


def _decide(hits: list[_Hit]) -> ParsedAnswer | None:
    if not hits:
        return None
    last_pos = max(h.pos for h in hits)
    # Several patterns can fire on one conclusion ("Answer: C" is also "answer C"); merge those
    # that start at the latest position, but a conclusion that names two letters stays ambiguous.
    latest = [h for h in hits if h.pos == last_pos]
    letters = frozenset().union(*(h.letters for h in latest))
    if len(letters) != 1:
        return _FAILED
    order = ["json", "boxed", "explicit", "option_text"]
    method = min((h.method for h in latest), key=lambda m: order.index(m) if m in order else 9)
    return ParsedAnswer(letter=next(iter(letters)), method=method, ok=True)


def parse_answer(text: str | None, options: Mapping[str, str]) -> ParsedAnswer:
    """Read the chosen option label from a model reply; see the module docstring."""
    if not text or not options:
        return _FAILED
    options = {str(k).strip().upper(): str(v) for k, v in options.items()}
    labels = frozenset(options)
    pats = _patterns(labels)
    clean = _normalise(text).strip()
    if not clean:
        return _FAILED

    # A reply that is a JSON object (structured output) says what it means.
    if clean.startswith(("{", "```")):
        stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", clean)
        json_hits = _json_hits(stripped, options, pats)
        if json_hits and stripped.startswith("{"):
            decided = _decide(json_hits)
            if decided is not None:
                return decided

    firm, hypothetical = _explicit_hits(clean, options, pats)
    decided = _decide(_boxed_hits(clean, options, pats) + _json_hits(clean, options, pats) + firm)
    if decided is not None:
        return decided

    verdicts: set[str] = set()
    for pattern in pats.verdicts:
        for m in pattern.finditer(clean):
            verdicts |= _letters_at(m, clean, pats)
    for m in pats.plural_verdict.finditer(clean):
        verdicts |= set(pats.any_letter.findall(m.group(0)))
    if len(verdicts) == 1:
        return ParsedAnswer(letter=next(iter(verdicts)), method="verdict", ok=True)
    if len(verdicts) > 1:
        return _FAILED
    # "If I had to choose, the answer would be C" is a conclusion when nothing firmer exists.
    decided = _decide(hypothetical)
    if decided is not None:
        return decided

    if len(clean) <= 200:
        bare = pats.bare.match(clean)
        if bare:
            letters = _letters_in_value(clean, options, pats)
            if len(letters) == 1:
                return ParsedAnswer(letter=next(iter(letters)), method="bare", ok=True)
        label = _text_match_checked(clean.rstrip("。.!！"), options)
        if label:
            return ParsedAnswer(letter=label, method="option_text", ok=True)
    return _last_line(clean, options, pats)


def _last_line(text: str, options: Mapping[str, str], pats: _Patterns) -> ParsedAnswer:
    """A long reply whose last line is only a letter ("C", "(C)", "Option C") or a letter with
    exactly its option's text ("C. Warfarin"). A line with more ("E. Alteplase: no") is part of
    a discussion, not a conclusion."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or len(lines[-1]) > 80:
        return _FAILED
    last = lines[-1].rstrip("。.!！")
    bare = pats.bare.match(last)
    if bare is None or len(_letters_at(bare, last, pats)) != 1:
        return _FAILED
    label, rest = bare.group(1), bare.group(2).strip()
    if rest and _fold(rest) != _fold(options[label]):
        return _FAILED
    return ParsedAnswer(letter=label, method="bare", ok=True)


# --- parse_synthesized --------------------------------------------------------------------------


# The shape of a synthesis reply, sent as a strict `response_format` JSON schema to servers that
# honour one. Strict schemas must name every property as required and allow no others, and
# cannot key an object by letters, so options are a list (A, B, C… in order); `_check_question`
# reads options either as such a list or as a {"A": …} object, and applies what a schema cannot
# say (4-5 distinct non-empty options, an answer among them), whatever the mode.
SYNTHESIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "stem": {"type": "string"},
                    "options": {"type": "array", "items": {"type": "string"}},
                    "answer": {"type": "string", "enum": ["A", "B", "C", "D", "E"]},
                    "cot": {"type": "string"},
                    "aspect": {"type": "string"},
                },
                "required": ["stem", "options", "answer", "cot", "aspect"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["questions"],
    "additionalProperties": False,
}
SYNTHESIS_SCHEMA_NAME = "synthesized_questions"


class ReplyFormatError(ValueError):
    """A reply that does not have the shape the prompt asked for.

    ``reasons`` lists what was wrong, one entry per rejected question when the questions
    themselves were the problem.
    """

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = list(reasons or [])


@dataclass(frozen=True)
class SynthesisParse:
    questions: list[dict[str, Any]]
    rejected: list[str]


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def _find_payload(text: str) -> Any:
    """The first JSON object (or list) in the reply: fenced blocks first, then bare JSON."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in _JSON_START.finditer(candidate):
            i = start.start()
            try:
                obj, _ = decoder.raw_decode(candidate, i)
            except ValueError:
                continue
            if isinstance(obj, dict) and "questions" in obj:
                return obj
            if isinstance(obj, list) and obj and all(isinstance(q, dict) for q in obj):
                return {"questions": obj}
    return None


_ANSWER_VALUE = re.compile(r"^[\s(（\[]*([A-Za-z])[\s)）\]]*(?:[.:、)]\s*.*)?$", re.DOTALL)


def _check_question(raw: Any) -> dict[str, Any]:
    """One synthesized question in canonical form, or ValueError saying why not."""
    if not isinstance(raw, dict):
        raise ValueError("is not an object")
    stem = raw.get("stem")
    if not isinstance(stem, str) or not stem.strip():
        raise ValueError("has an empty or missing stem")

    options = raw.get("options")
    if isinstance(options, list) and all(isinstance(o, str) for o in options):
        options = {chr(ord("A") + i): text for i, text in enumerate(options)}
    if not isinstance(options, dict):
        raise ValueError("has no options object")
    labels = [str(k).strip().upper() for k in options]
    if not 4 <= len(labels) <= 5:
        raise ValueError(f"has {len(labels)} options (4 or 5 required)")
    expected = [chr(ord("A") + i) for i in range(len(labels))]
    if sorted(labels) != expected:
        raise ValueError(f"has options labelled {','.join(labels)} (expected {','.join(expected)})")
    clean_options = {}
    for key, value in options.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"has an empty option {str(key).strip().upper()}")
        clean_options[str(key).strip().upper()] = value.strip()
    clean_options = dict(sorted(clean_options.items()))
    if len({_fold(v) for v in clean_options.values()}) != len(clean_options):
        raise ValueError("has two options with the same text")

    answer = raw.get("answer")
    match = _ANSWER_VALUE.match(answer) if isinstance(answer, str) else None
    letter = match.group(1).upper() if match else None
    if letter not in clean_options:
        raise ValueError(f"has answer {answer!r}, which is not one of its options")

    cot = raw.get("cot")
    if not isinstance(cot, str) or not cot.strip():
        raise ValueError("has an empty or missing cot")
    aspect = raw.get("aspect")
    return {
        "stem": stem.strip(),
        "options": clean_options,
        "answer": letter,
        "cot": cot.strip(),
        "aspect": aspect.strip() if isinstance(aspect, str) else "",
    }


def parse_synthesized_detailed(text: str | None) -> SynthesisParse:
    """Like ``parse_synthesized`` but also returns why each skipped question was rejected."""
    if not text or not text.strip():
        raise ReplyFormatError("the reply is empty")
    payload = _find_payload(text)
    if payload is None:
        raise ReplyFormatError("the reply holds no JSON object with a 'questions' list")
    questions = payload.get("questions")
    if not isinstance(questions, list):
        raise ReplyFormatError("'questions' in the reply is not a list")
    if not questions:
        raise ReplyFormatError("the reply's 'questions' list is empty")
    valid: list[dict[str, Any]] = []
    rejected: list[str] = []
    for number, raw in enumerate(questions, start=1):
        try:
            valid.append(_check_question(raw))
        except ValueError as exc:
            rejected.append(f"question {number} {exc}")
    if not valid:
        raise ReplyFormatError(
            "no valid question in the reply: " + "; ".join(rejected), reasons=rejected
        )
    return SynthesisParse(questions=valid, rejected=rejected)


def parse_synthesized(text: str | None) -> list[dict[str, Any]]:
    """Questions from a synthesis reply, each ``{stem, options, answer, cot, aspect}``.

    Rule: the first JSON object with a ``questions`` list (inside a ```json fence or after prose)
    is read. Each question must have a non-empty stem, 4–5 non-empty distinct options labelled
    A, B, C… consecutively, an answer among them and a non-empty cot; ``aspect`` is optional.
    Invalid questions are skipped; if none is valid, or no such JSON exists, ``ReplyFormatError``
    says why. Use ``parse_synthesized_detailed`` to log the skipped ones.
    """
    return parse_synthesized_detailed(text).questions
