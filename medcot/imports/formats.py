"""Seed file formats: detection, decoding and parsing into uniform `SeedRecord`s.

A file is read in two steps. The *container* (JSON Lines, one JSON document, CSV or TSV with or
without a header row) yields raw records, each a dict of the file's own field or column names.
A *mapping* from our field names to the file's names then turns each raw record into a
`SeedRecord`. The known layouts (MedQA, MedMCQA, CMMLU, our own) are preset mappings; any other
layout gets a mapping guessed from its field names, which the preview shows and lets people edit.

Parsing never raises on bad records: each problem becomes a `LineError` naming the line (or the
record, in a JSON document), so the caller can report the bad lines at once and import nothing.
A file that cannot be read at all raises `FormatError` with one sentence saying what to change.
Errors are kept in an `ErrorLog`, which holds the first `ERROR_LIMIT` and counts the rest, so a
50 MB file of junk costs a counter, not a list of a million messages.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

from django.utils.translation import gettext_lazy as _

from medcot.imports.messages import Msg, problem_dict
from medcot.models import OPTION_LABELS, CognitiveLevel, Difficulty, Language, QuestionType

FORMATS = {
    "auto": _("Detect from the file"),
    "json": _("JSON document (a list of records, or records under a key)"),
    "medcot-jsonl": _("MedCoT JSONL (docs/import-formats.md)"),
    "medcot-csv": _("MedCoT CSV or TSV (docs/import-formats.md)"),
    "medqa-jsonl": _("MedQA-style JSONL (options object + answer_idx)"),
    "medmcqa-jsonl": _("MedMCQA-style JSONL (opa…opd + cop, 1-based)"),
    "cmmlu-csv": _("CMMLU-style CSV (,Question,A,B,C,D,Answer)"),
    "mapped": _("Another layout, with a field mapping"),
}

# Fields a mapping may name, and what they mean.
MAPPABLE_FIELDS = (
    "id",
    "question",
    "A",
    "B",
    "C",
    "D",
    "E",
    "options",
    "answer",
    "type",
    "specialty",
    "cognitive_level",
    "difficulty",
    "language",
    "source",
    "cot",
    "case_text",
    "group_id",
    "questions",
)

ERROR_LIMIT = 100
# A file whose first this-many records hold not one readable record is not a seed file.
GIVE_UP_AFTER = 1000
CSV_FIELD_LIMIT = 1 << 20

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
QUESTION_TYPES = frozenset(QuestionType.values)


class FormatError(Exception):
    """The file as a whole cannot be read as asked. `args[0]` is a `Msg` (code + params)."""

    @property
    def problem(self) -> str:
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class LineError:
    line: int
    message: str  # a Msg: the English sentence, with the code and params that translate it

    def as_dict(self) -> dict:
        return problem_dict(self.line, self.message)


class ErrorLog:
    """The first `limit` problems in the order found, and how many there were in all."""

    def __init__(self, limit: int = ERROR_LIMIT):
        self.limit = limit
        self.kept: list[LineError] = []
        self.total = 0

    def add(self, line: int, message: str) -> None:
        self.total += 1
        if len(self.kept) < self.limit:
            self.kept.append(LineError(line, message))

    def extend(self, errors) -> None:
        for error in errors:
            self.add(error.line, error.message)

    def __bool__(self) -> bool:
        return self.total > 0

    def __len__(self) -> int:
        return self.total


@dataclass
class SeedRecord:
    line: int
    external_id: str
    stem: str
    options: dict[str, str]
    answer: str
    question_type: str = QuestionType.K
    specialty: str = ""
    cognitive_level: str = ""
    difficulty: str = ""
    language: str = ""
    source: str = ""
    cot: str = ""
    case_text: str = ""
    group_id: str = ""
    group_order: int | None = None

    def fingerprint(self) -> str:
        """What "the same question" means for re-imports: stem, options and key."""
        return content_fingerprint(self.stem, self.options, self.answer)

    def as_dict(self) -> dict:
        """The record as it will be stored (shown in the preview and the API's dry run)."""
        return {
            "line": self.line,
            "id": self.external_id,
            "group_id": self.group_id,
            "group_order": self.group_order,
            "case_text": self.case_text,
            "question": self.stem,
            "options": self.options,
            "answer": self.answer,
            "type": self.question_type,
            "specialty": self.specialty,
            "cognitive_level": self.cognitive_level,
            "difficulty": self.difficulty,
            "language": str(self.language),
            "source": self.source,
            "cot": self.cot,
        }


def content_fingerprint(stem: str, options: dict[str, str], answer: str) -> str:
    payload = json.dumps([stem.strip(), [options.get(k, "") for k in OPTION_LABELS], answer])
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class ImportOptions:
    format: str = "auto"
    file_name: str = ""
    specialty: str = ""
    language: str = ""
    question_type: str = ""
    source: str = ""
    mapping: dict = field(default_factory=dict)
    # JSON documents: where the records are, e.g. "data" or "data.questions" (found if empty).
    records_path: str = ""
    # CSV/TSV: "auto" (a header when the first row looks like one), "yes", or "no" (first row is
    # data: columns are then named by position, 1, 2, 3 …).
    header: str = "auto"
    # Numeric answers: "" (decided from the file), "0" or "1".
    index_base: str = ""
    license: str = ""


@dataclass
class ParsedFile:
    format: str
    records: list[SeedRecord]
    errors: ErrorLog
    total_lines: int
    container: str = ""
    records_path: str = ""
    header: bool | None = None
    columns: list[str] = field(default_factory=list)
    mapping: dict = field(default_factory=dict)
    warnings: ErrorLog = field(default_factory=ErrorLog)
    unit: str = "line"

    @property
    def group_count(self) -> int:
        return len({r.group_id for r in self.records if r.group_id})


# ---------------------------------------------------------------- names in the wild

# Our field → the names files use for it, most specific first (compared case-insensitively,
# ignoring spaces, dashes and underscores).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "id": ("id", "qid", "questionid", "uid", "itemid", "_id", "编号", "题号", "序号"),
    "question": (
        "question",
        "stem",
        "questiontext",
        "qtext",
        "query",
        "prompt",
        "题干",
        "问题",
        "题目",
        "试题",
    ),
    "options": ("options", "choices", "option", "candidates", "选项", "备选答案"),
    "answer": (
        "answeridx",
        "answerkey",
        "answer",
        "correctanswer",
        "correctoption",
        "correct",
        "cop",
        "key",
        "label",
        "gold",
        "target",
        "答案",
        "正确答案",
        "标准答案",
    ),
    "type": ("type", "questiontype", "题型"),
    "specialty": (
        "specialty",
        "speciality",
        "subjectname",
        "subject",
        "department",
        "category",
        "topic",
        "科室",
        "学科",
        "科目",
    ),
    "cognitive_level": ("cognitivelevel", "level"),
    "difficulty": ("difficulty", "难度"),
    "language": ("language", "lang", "语言"),
    "source": ("source", "来源", "出处"),
    "cot": ("cot", "explanation", "exp", "rationale", "analysis", "解析", "答案解析"),
    "case_text": (
        "casetext",
        "case",
        "vignette",
        "casesummary",
        "sharedstem",
        "context",
        "background",
        "scenario",
        "passage",
        "病例",
        "病例摘要",
        "案例",
        "材料",
        "共用题干",
    ),
    "group_id": ("groupid", "caseid", "group", "病例编号"),
    "questions": (
        "questions",
        "subquestions",
        "items",
        "qas",
        "qa",
        "子题",
        "小题",
        "问题组",
    ),
}
OPTION_COLUMN = re.compile(
    r"^(?:op(?:tion)?[\s_-]*|choice[\s_-]*|选项)?\(?([a-e])\)?$", re.IGNORECASE
)
LETTER = re.compile(r"^[\s(（\[]*([A-Ea-e])[\s)）\].．、:：]*$")
ANY_LETTER = re.compile(r"^[\s(（\[]*([A-Za-z])[\s)）\].．、:：]*$")
LETTER_THEN_TEXT = re.compile(r"^\s*[(（]?\s*([A-Ea-e])\s*(?:[)）]|[.．、:：])\s*(.*)$", re.S)
ANSWER_PREFIX = re.compile(
    r"^\s*(?:answer|ans|correct answer|the answer is|答案|正确答案)\s*[:：是为-]?\s*", re.I
)
# An option on its own line: "A. text", "A．text", "A) text", "(A) text", "（A）text", "A、text".
OPTION_LINE = re.compile(
    r"^\s*(?:[(（]\s*([A-Ea-e])\s*[)）]|([A-Ea-e])\s*[.．、:：)）])\s*(\S.*?)\s*$"
)
# Options run together on one line: "… A. one B. two C. three D. four".
INLINE_OPTION = re.compile(r"(?:(?<=\s)|^)(?:[(（]([A-E])[)）]|([A-E])[.．、)）])\s*")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def guess_mapping(keys: list[str]) -> dict:
    """Our fields → the file's names, from the names alone."""
    by_key: dict[str, str] = {}
    for name in keys:
        by_key.setdefault(_key(name), name)
    mapping: dict = {}
    taken: set[str] = set()

    def pick(ours: str) -> None:
        for synonym in SYNONYMS[ours]:
            name = by_key.get(synonym)
            if name is not None and name not in taken:
                mapping[ours] = name
                taken.add(name)
                return

    # MedQA carries the key as answer_idx and the key's text as answer: the letter comes first.
    for ours in ("questions", "id", "group_id", "answer", "options", "cot", "question"):
        pick(ours)
    pick("case_text")
    for ours in ("type", "specialty", "cognitive_level", "difficulty", "language", "source"):
        pick(ours)
    # Option columns too, even beside an options field: records of one file may differ, and a
    # record whose options field is empty falls back to its columns.
    for name in keys:
        match = OPTION_COLUMN.match(str(name).strip())
        if match and name not in taken:
            label = match.group(1).upper()
            if label not in mapping:
                mapping[label] = name
                taken.add(name)
    return mapping


# ---------------------------------------------------------------- decoding


def _sniff_binary(data: bytes) -> None:
    head = data[:65536]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FormatError(Msg("utf16"))
    if b"\x00" in head:
        raise FormatError(Msg("binary"))
    if head[:4] == b"PK\x03\x04":
        raise FormatError(Msg("zip"))


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(codecs.BOM_UTF8) else data


def _physical_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) without building a list: a 50 MB file stays one buffer.
    Classic Mac files (CR only, no LF) are split on CR."""
    sep = b"\n" if b"\n" in data[: 1 << 20] or b"\r" not in data[: 1 << 20] else b"\r"
    start, number, size = 0, 0, len(data)
    while start < size:
        end = data.find(sep, start)
        if end < 0:
            end = size
        number += 1
        raw = data[start:end]
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        yield number, raw
        start = end + 1


def _decode(number: int, raw: bytes, errors: ErrorLog) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.add(
            number,
            Msg("bad_encoding", byte=f"{raw[exc.start]:02x}", column=exc.start + 1),
        )
        return None


# ---------------------------------------------------------------- containers


def detect_container(data: bytes) -> str:
    """`jsonl`, `json` or `csv` from the content (not the file name)."""
    head = _strip_bom(data[:65536]).lstrip()
    if not head:
        raise FormatError(Msg("no_records"))
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        # The whole first line, however long (a record with a long vignette passes 64 KB).
        offset = 3 if data.startswith(codecs.BOM_UTF8) else 0
        window = data[offset:65536]
        offset += len(window) - len(window.lstrip())
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        first = data[offset:end].strip()
        try:
            value = json.loads(first.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return "json"  # an object spread over lines: one JSON document
        if isinstance(value, dict) and not _looks_like_record(value):
            tail = data[end : end + 65536]
            if len(data) - end <= 65536 and not tail.strip():
                return "json"  # one line holding the whole document
        return "jsonl"
    return "csv"


def _looks_like_record(value: dict) -> bool:
    """A question (or a case with its questions), not a wrapper around a list of them."""
    keys = {_key(k) for k in value}
    if keys & set(SYNONYMS["questions"]):
        return any(
            isinstance(v, list) and any(isinstance(x, dict) for x in v)
            for k, v in value.items()
            if _key(k) in SYNONYMS["questions"]
        )
    return bool(keys & (set(SYNONYMS["question"]) | set(SYNONYMS["answer"])))


def _read_jsonl(data: bytes, errors: ErrorLog) -> Iterator[tuple[int, bytes, object]]:
    for number, raw in _physical_lines(data):
        if not raw or raw.isspace():
            continue
        text = _decode(number, raw, errors)
        if text is None:
            yield number, raw, None
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            code = "invalid_json_line_cr" if "\r" in text else "invalid_json_line"
            errors.add(number, Msg(code, detail=exc.msg, column=exc.colno))
            yield number, raw, None
            continue
        if not isinstance(value, dict):
            errors.add(number, Msg("line_not_object"))
            yield number, raw, None
            continue
        yield number, raw, value


def _load_document(data: bytes) -> object:
    text = _strip_bom(data)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text.count(b"\n", 0, exc.start) + 1
        raise FormatError(
            Msg("bad_encoding_on_line", byte=f"{text[exc.start]:02x}", line=line)
        ) from None
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1:
            first = decoded.split("\n", 1)[0]
            try:
                json.loads(first)
            except json.JSONDecodeError:
                pass
            else:
                raise FormatError(Msg("document_is_jsonl")) from None
        raise FormatError(
            Msg(
                "invalid_json_document",
                detail=exc.msg.removesuffix(" at"),
                line=exc.lineno,
                column=exc.colno,
            )
        ) from None


def _record_lists(value, path: str = "", depth: int = 0) -> Iterator[tuple[str, list]]:
    """Every list of objects in a document, with its path (`data`, `data.questions`)."""
    if isinstance(value, list):
        if value and sum(isinstance(v, dict) for v in value[:50]) * 2 > min(len(value), 50):
            yield path, value
        return
    if isinstance(value, dict) and depth < 4:
        for key, child in value.items():
            yield from _record_lists(child, f"{path}.{key}" if path else str(key), depth + 1)


def find_records(document, records_path: str = "") -> tuple[str, list]:
    """The list of records in a JSON document: at `records_path` if given, else the one
    obvious list of record-like objects."""
    if records_path:
        value = document
        for part in [p for p in records_path.strip().strip(".").split(".") if p]:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.lstrip("-").isdigit():
                try:
                    value = value[int(part)]
                except IndexError:
                    value = None
            else:
                raise FormatError(Msg("records_path_missing", path=records_path, part=part))
        if not isinstance(value, list):
            raise FormatError(Msg("records_path_not_list", path=records_path))
        return records_path, value
    if isinstance(document, dict) and _looks_like_record(document):
        return "", [document]
    candidates = list(_record_lists(document))
    if not candidates:
        raise FormatError(Msg("no_record_list"))
    # Inside case groups the sub-question lists are lists of records too; the outermost list
    # is the records, and the rest are parts of them.
    outer = [
        (p, v)
        for p, v in candidates
        if not any(p != q and p.startswith(q + ".") for q, _ in candidates)
    ]
    recordish = [
        (p, v)
        for p, v in outer
        if any(_looks_like_record(x) for x in v[:20] if isinstance(x, dict))
    ]
    chosen = recordish or outer
    if len(chosen) > 1:
        chosen.sort(key=lambda pv: -len(pv[1]))
        if len(chosen[0][1]) < 10 * len(chosen[1][1]):
            names = ", ".join(repr(p or "(top level)") for p, _ in chosen[:5])
            raise FormatError(Msg("several_record_lists", names=names))
    return chosen[0]


def _detect_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_csv(
    data: bytes, errors: ErrorLog, on_unreadable=None
) -> tuple[str, Iterator[tuple[int, bytes, list[str]]]]:
    """(delimiter, rows with the line each starts on and its raw bytes)."""
    first = b""
    for _line, raw in _physical_lines(data):
        if raw.strip():
            first = raw
            break
    delimiter = _detect_delimiter(first.decode("utf-8", errors="replace"))

    def rows() -> Iterator[tuple[int, bytes, list[str]]]:
        lines = _physical_lines(data)
        pending: list[tuple[int, bytes, str]] = []

        def source() -> Iterator[str]:
            for number, raw in lines:
                text = _decode(number, raw, errors)
                if text is None:
                    if on_unreadable is not None:
                        on_unreadable(number)
                    continue
                pending.append((number, raw, text))
                yield text + "\n"

        csv.field_size_limit(CSV_FIELD_LIMIT)
        reader = csv.reader(source(), delimiter=delimiter)
        while True:
            pending.clear()
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                where = pending[0][0] if pending else reader.line_num
                message = str(exc)
                if "new-line" in message or any("\r" in t for _, _, t in pending):
                    message = Msg("stray_cr")
                elif "field limit" in message:
                    message = Msg("field_too_long")
                errors.add(where, message)
                if on_unreadable is not None:
                    on_unreadable(where)
                continue
            if not pending:
                continue
            if not any(cell.strip() for cell in row):
                continue
            yield pending[0][0], b"\n".join(raw for _, raw, _ in pending), row

    return delimiter, rows()


# ---------------------------------------------------------------- normalisation


def _text(value) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def normalise_language(value: str, stem: str) -> str | None:
    value = value.strip().lower()
    if not value:
        # No language given: Chinese if a tenth or more of the stem's characters are CJK (the
        # first 300 characters decide; a vignette does not change language halfway).
        head = stem[:300]
        cjk = len(CJK.findall(head))
        return Language.ZH if head and cjk * 10 >= len(head) else Language.EN
    if value.startswith("zh") or value in {"chinese", "中文", "cn"}:
        return Language.ZH
    if value.startswith("en") or value == "english":
        return Language.EN
    return None


_LEVELS = {
    "recall": CognitiveLevel.RECALL,
    "memory": CognitiveLevel.RECALL,
    "interpretation": CognitiveLevel.INTERPRETATION,
    "understanding": CognitiveLevel.INTERPRETATION,
    "problem_solving": CognitiveLevel.PROBLEM_SOLVING,
    "problem-solving": CognitiveLevel.PROBLEM_SOLVING,
    "application": CognitiveLevel.PROBLEM_SOLVING,
}
_DIFFICULTIES = {
    "easy": Difficulty.EASY,
    "moderate": Difficulty.MODERATE,
    "medium": Difficulty.MODERATE,
    "hard": Difficulty.HARD,
    "difficult": Difficulty.HARD,
}


def split_embedded_options(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A stem with its options written into it → (stem, [(label, text)…]); no options found →
    (text, []). Options must start at A and run on consecutively, one per line or run together
    on the last line."""
    lines = text.split("\n")
    for start, line in enumerate(lines):
        match = OPTION_LINE.match(line)
        if not match or (match.group(1) or match.group(2)).upper() != "A":
            continue
        found: list[tuple[str, str]] = []
        for follow in lines[start:]:
            if not follow.strip():
                continue
            m = OPTION_LINE.match(follow)
            expected = OPTION_LABELS[len(found)] if len(found) < 5 else None
            if m and (m.group(1) or m.group(2)).upper() == expected:
                found.append((expected, m.group(3).strip()))
            elif found:
                # A line that is not the next option continues the last one.
                label, previous = found[-1]
                found[-1] = (label, f"{previous} {follow.strip()}")
        if len(found) >= 2:
            return "\n".join(lines[:start]).strip(), found
    # Run together on one line: "… A. one B. two C. three D. four"
    last = lines[-1] if lines else ""
    parts = INLINE_OPTION.split(last)
    # split → [before, g1, g2, text, g1, g2, text …]
    labels = [(a or b) for a, b in zip(parts[1::3], parts[2::3], strict=False)]
    if len(labels) >= 4 and labels == list(OPTION_LABELS[: len(labels)]):
        texts = [t.strip() for t in parts[3::3]]
        before = "\n".join([*lines[:-1], parts[0]]).strip()
        return before, list(zip(labels, texts, strict=True))
    return text, []


_PLAIN_LABELS = frozenset(OPTION_LABELS)


def _option_items_from_dict(raw_options: dict) -> list[tuple[str, str]]:
    """Options keyed by letter, by number (from 0 or 1) or by a label of their own."""
    lowered = {_key(k): v for k, v in raw_options.items()}
    if isinstance(lowered.get("label"), list) and isinstance(lowered.get("text"), list):
        # {"label": ["A", …], "text": ["…", …]} (ARC, OpenBookQA on the Hub)
        raw_options = dict(zip(lowered["label"], lowered["text"], strict=False))
    items = []
    if all(k in _PLAIN_LABELS for k in raw_options):
        # The common case, {"A": …, "B": …}: nothing to work out.
        return [(k, _text(v)) for k, v in raw_options.items()]
    keys = [_text(k) for k in raw_options]
    numeric = all(k.isdigit() for k in keys)
    base = min((int(k) for k in keys), default=0) if numeric else 0
    for name, value in zip(keys, raw_options.values(), strict=True):
        if numeric:
            index = int(name) - base
            label = OPTION_LABELS[index] if 0 <= index < 5 else f"#{name}"
        else:
            match = LETTER.match(name)
            label = match.group(1).upper() if match else name
        items.append((label, _text(value)))
    return items


def _option_items_from_dicts(raw_options: list[dict]) -> list[tuple[str, str]]:
    """Options as a list of objects, each with a label (or its place) and a text."""
    items = []
    for i, value in enumerate(raw_options):
        lowered = {_key(k): v for k, v in value.items()}
        label = (
            _text(lowered.get("label") or lowered.get("key") or lowered.get("letter") or "")
            .upper()
            .strip("().．、 ")
        )
        text = next(
            (
                lowered[k]
                for k in ("text", "value", "content", "option", "answer", "atext")
                if k in lowered
            ),
            # Else the first text that is not the label: {"aid": 1, "atext": "…"}
            next((v for v in value.values() if isinstance(v, str) and len(v) > 1), None),
        )
        items.append((label or (OPTION_LABELS[i] if i < 5 else f"#{i + 1}"), _text(text)))
    return items


def _option_items(raw_options, problems: list[str]) -> list[tuple[str, str]] | None:
    """Options as (label, text) pairs from a dict, a list or a block of text."""
    if isinstance(raw_options, dict):
        return _option_items_from_dict(raw_options)
    if isinstance(raw_options, list):
        if raw_options and all(isinstance(v, dict) for v in raw_options):
            return _option_items_from_dicts(raw_options)
        texts = [_text(v) for v in raw_options]
        # ["A. one", "B. two", …]: the labels are written into the texts.
        prefixed = [LETTER_THEN_TEXT.match(t) for t in texts]
        if len(texts) >= 2 and all(
            m and m.group(1).upper() == OPTION_LABELS[i] if i < 5 else False
            for i, m in enumerate(prefixed)
        ):
            return [(m.group(1).upper(), m.group(2).strip()) for m in prefixed]
        return [(OPTION_LABELS[i] if i < 5 else f"#{i + 1}", t) for i, t in enumerate(texts)]
    if isinstance(raw_options, str):
        _, found = split_embedded_options(raw_options)
        if found:
            return found
        problems.append(Msg("options_unlabelled_text"))
        return []
    problems.append(Msg("options_bad_shape"))
    return []


def _answer_label(value, opts: dict[str, str], index_base: str) -> tuple[str, int | None, str]:
    """(letter, pending index, problem). A bare number is an index whose base (0 or 1) may
    only be known once the whole file is read: it is returned as the pending index."""
    if isinstance(value, list):
        if len(value) != 1:
            return (
                "",
                None,
                (
                    Msg("several_answers", n=len(value), given=_text(value))
                    if value
                    else Msg("missing_answer")
                ),
            )
        value = value[0]
    if isinstance(value, bool):
        return "", None, Msg("answer_not_key", value=value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer():
            return _index(int(value), opts, index_base)
        return "", None, Msg("answer_not_number", value=value)
    text = _text(value)
    if not text:
        return "", None, Msg("missing_answer")
    text = ANSWER_PREFIX.sub("", text).strip()
    if text.isdigit():
        return _index(int(text), opts, index_base)
    match = LETTER.match(text)
    if match:
        return match.group(1).upper(), None, ""
    match = ANY_LETTER.match(text)
    if match and not any(t.strip().casefold() == text.casefold() for t in opts.values()):
        return match.group(1).upper(), None, ""
    match = LETTER_THEN_TEXT.match(text)
    if match and (
        not match.group(2).strip()
        or match.group(2).strip().casefold()
        == opts.get(match.group(1).upper(), "").strip().casefold()
    ):
        return match.group(1).upper(), None, ""
    same = [label for label, t in opts.items() if t.strip().casefold() == text.casefold()]
    if len(same) == 1:
        return same[0], None, ""
    if len(same) > 1:
        return "", None, Msg("answer_matches_several", text=text[:60], labels=", ".join(same))
    if re.fullmatch(r"[A-Ea-e]([,，、/ ]*[A-Ea-e])+", text):
        return "", None, Msg("answer_names_several", text=text)
    return "", None, Msg("answer_unrecognised", text=text[:60])


def _index(n: int, opts: dict[str, str], index_base: str) -> tuple[str, int | None, str]:
    if index_base in {"0", "1"}:
        i = n - int(index_base)
        if 0 <= i < len(OPTION_LABELS):
            return OPTION_LABELS[i], None, ""
        return "", None, Msg("answer_out_of_range", n=n)
    if n < 0 or n > len(opts):
        return "", None, Msg("answer_out_of_range", n=n)
    return "", n, ""


def _unwrap_question(raw: dict) -> tuple[dict, object]:
    """{"question": {"stem": "…", "choices": …}} (ARC): the stem, and options beside it."""
    question = raw.get("question")
    if isinstance(question, dict):
        inner = {_key(k): v for k, v in question.items()}
        if raw.get("options") in (None, "", [], {}) and "choices" in inner:
            raw = {**raw, "options": inner["choices"]}
        question = inner.get("stem") or inner.get("text") or inner.get("question")
    return raw, question


def _option_items_found(
    raw: dict, stem: str, problems: list[str]
) -> tuple[str, list[tuple[str, str]]]:
    """The (label, text) options wherever the record has them: an `options` field, one column
    per label, or "A. …" lines written into the stem (which then loses them)."""
    raw_options = raw.get("options")
    if raw_options not in (None, "", [], {}):
        return stem, _option_items(raw_options, problems)
    items = [(label, _text(raw.get(label))) for label in OPTION_LABELS]
    items = [(label, text) for label, text in items if text or label in "ABCD"]
    if not any(text for _, text in items):
        # No options anywhere but in the stem: "A. …" lines written into it.
        stem, items = split_embedded_options(stem)
        if not items:
            items = []
            problems.append(Msg("no_options"))
    return stem, items


def _options_checked(items: list[tuple[str, str]], problems: list[str]) -> dict[str, str]:
    """The options by label, with a problem for each way they fall short of four to five
    consecutive labelled, non-empty choices."""
    opts: dict[str, str] = {}
    present = [(label, text) for label, text in items if text or label in "ABCD"]
    if items and len(present) > 5:
        problems.append(Msg("too_many_options", n=len(present)))
    elif items:
        for label, text in present:
            if label not in OPTION_LABELS:
                problems.append(Msg("bad_option_label", label=label))
            elif not text:
                problems.append(Msg("empty_option", label=label))
            else:
                opts[label] = text
        filled = [label for label, text in present if text]
        if len(filled) < 4 and not problems:
            problems.append(Msg("too_few_options", n=len(filled)))
        labels = sorted(opts)
        if len(labels) >= 4 and labels != list(OPTION_LABELS[: len(labels)]):
            problems.append(Msg("options_not_consecutive", labels=", ".join(labels)))
    return opts


def _question_type(raw: dict, options: ImportOptions, problems: list[str]) -> str:
    """A question of a case is type S (best choice for a case summary) unless it says
    otherwise; else the import's default, else K."""
    qtype = (
        _text(raw.get("type"))
        or options.question_type
        or (QuestionType.S if _text(raw.get("case_text")) else QuestionType.K)
    )
    qtype = qtype.upper()
    if qtype not in QUESTION_TYPES:
        problems.append(Msg("bad_question_type", value=qtype))
    return qtype


def _level_and_difficulty(raw: dict, problems: list[str]) -> tuple[str, str]:
    """The cognitive level and difficulty, each "" when not given."""
    level_raw = _text(raw.get("cognitive_level")).lower().replace(" ", "_")
    level = _LEVELS.get(level_raw, "") if level_raw else ""
    if level_raw and not level:
        problems.append(Msg("bad_cognitive_level", value=level_raw))
    diff_raw = _text(raw.get("difficulty")).lower()
    difficulty = _DIFFICULTIES.get(diff_raw, "") if diff_raw else ""
    if diff_raw and not difficulty:
        problems.append(Msg("bad_difficulty", value=diff_raw))
    return level, difficulty


def _ids(raw: dict, default_id: str, case_text: str, problems: list[str]) -> tuple[str, str]:
    """The record's id and its group's: a case without a group id is grouped by its text."""
    external_id = _text(raw.get("id")) or default_id
    if len(external_id) > 200:
        problems.append(Msg("id_too_long"))
    group_id = _text(raw.get("group_id"))
    if case_text and not group_id:
        group_id = "case-" + hashlib.sha256(case_text.encode()).hexdigest()[:12]
    if len(group_id) > 200:
        problems.append(Msg("group_id_too_long"))
    return external_id, group_id


def build_record(
    line: int, raw: dict, options: ImportOptions, default_id: str
) -> SeedRecord | list[LineError]:
    """Validate one raw record (already mapped to our field names). Each step adds its
    problems in turn, so a line's errors read in the order of its fields."""
    problems: list[str] = []
    raw, question = _unwrap_question(raw)
    stem, items = _option_items_found(raw, _text(question), problems)
    if not stem:
        problems.insert(0, Msg("empty_stem"))
    opts = _options_checked(items, problems)

    answer, pending_index, problem = _answer_label(raw.get("answer"), opts, options.index_base)
    if problem:
        problems.append(problem)
    elif answer and answer not in opts and len(opts) >= 4:
        problems.append(Msg("answer_not_option", answer=answer, labels=", ".join(sorted(opts))))

    qtype = _question_type(raw, options, problems)
    level, difficulty = _level_and_difficulty(raw, problems)
    case_text = _text(raw.get("case_text"))
    language = normalise_language(
        _text(raw.get("language")) or options.language, f"{case_text}\n{stem}".strip()
    )
    if language is None:
        problems.append(Msg("bad_language", value=_text(raw.get("language"))))
    external_id, group_id = _ids(raw, default_id, case_text, problems)

    if problems:
        return [LineError(line, p) for p in problems]
    record = SeedRecord(
        line=line,
        external_id=external_id,
        stem=stem,
        options=opts,
        answer=answer,
        question_type=qtype,
        specialty=(options.specialty or _text(raw.get("specialty")))[:100],
        cognitive_level=level,
        difficulty=difficulty,
        language=language or "",
        source=(options.source or _text(raw.get("source")) or _text(raw.get("_source")))[:300],
        cot=_text(raw.get("cot")),
        case_text=case_text,
        group_id=group_id,
        group_order=raw.get("_group_order"),
    )
    record.pending_index = pending_index  # type: ignore[attr-defined]
    return record


def _content_id(prefix: str, raw: dict) -> str:
    """A stable id for records that carry none: a digest of the record's keys and values."""
    digest = hashlib.sha256()
    for key in sorted(raw, key=str):
        value = raw[key]
        if isinstance(value, dict):
            value = "\x1e".join(f"{k}\x1d{v}" for k, v in sorted(value.items(), key=str))
        digest.update(f"{key}\x1f{value}\x1e".encode())
    return f"{prefix}-{digest.hexdigest()[:16]}"


# ---------------------------------------------------------------- layouts (preset mappings)

CMMLU_HEADER = ["", "Question", "A", "B", "C", "D", "Answer"]
LAYOUT_MAPPINGS = {
    "medqa-jsonl": {"question": "question", "options": "options", "answer": "answer_idx"},
    "medmcqa-jsonl": {
        "id": "id",
        "question": "question",
        "A": "opa",
        "B": "opb",
        "C": "opc",
        "D": "opd",
        "answer": "cop",
        "specialty": "subject_name",
    },
    "cmmlu-csv": {
        "question": "Question",
        "A": "A",
        "B": "B",
        "C": "C",
        "D": "D",
        "answer": "Answer",
    },
}


def _layout_of(keys: set[str]) -> str:
    if "answer_idx" in keys and "options" in keys and "question" in keys:
        return "medqa-jsonl"
    if {"opa", "opb", "opc", "opd", "cop"} <= keys:
        return "medmcqa-jsonl"
    return ""


def detect_format(data: bytes, file_name: str = "") -> str:
    """The layout's name, as shown in the report (kept for callers that only want the name)."""
    _sniff_binary(data)
    container = detect_container(data)
    if container == "jsonl":
        first = _strip_bom(data[:65536]).lstrip().split(b"\n", 1)[0]
        try:
            record = json.loads(first.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return "medcot-jsonl"
        return _layout_of(set(record) if isinstance(record, dict) else set()) or "medcot-jsonl"
    if container == "json":
        return "json"
    header_line = _strip_bom(data[:65536]).lstrip().split(b"\n", 1)[0]
    header_text = header_line.decode("utf-8", errors="replace").strip("\r")
    header = next(csv.reader([header_text], delimiter=_detect_delimiter(header_text)), [])
    header = [h.strip() for h in header]
    if header[:7] == CMMLU_HEADER:
        return "cmmlu-csv"
    lowered = {_key(h) for h in header}
    if lowered & set(SYNONYMS["question"]) and lowered & set(SYNONYMS["answer"]):
        return "medcot-csv"
    raise FormatError(Msg("layout_unknown"))


# ---------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, options: ImportOptions):
        self.options = options
        self.records: list[SeedRecord] = []
        self.errors = ErrorLog()
        self.warnings = ErrorLog()
        self.seen: dict[bytes, int] = {}
        self.seen_ids: dict[str, int] = {}
        self.read = 0
        self.bad_records = 0
        # Records that could not even be read (not JSON, not UTF-8, wrong number of columns).
        self.unreadable = 0
        self.unreadable_run = 0
        self.run_start = 0
        self.unit = "line"

    def unit_msg(self, plural: bool = False) -> Msg:
        """ "line" or "record" (the unit this file counts in), as a word that translates."""
        return Msg(f"unit_{self.unit}s" if plural else f"unit_{self.unit}")

    def duplicate(self, line: int, raw: bytes) -> bool:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        first = self.seen.get(digest)
        if first is not None:
            self.warnings.add(line, Msg("repeated", unit=self.unit_msg(), line=line, first=first))
            return True
        self.seen[digest] = line
        return False

    def give_up(self) -> None:
        if self.read >= GIVE_UP_AFTER and not self.records:
            raise _GiveUp(
                Msg("give_up_first", n=f"{GIVE_UP_AFTER:,}", units=self.unit_msg(plural=True))
            )

    def unreadable_line(self, line: int) -> None:
        """A line that is not a record at all (not JSON, wrong number of columns …). A long
        run of them is junk, not a seed file: stop there rather than list a million lines."""
        self.read += 1
        self.bad_records += 1
        self.unreadable += 1
        self.unreadable_run += 1
        if self.unreadable_run == 1:
            self.run_start = line
        if self.unreadable_run >= GIVE_UP_AFTER:
            raise _GiveUp(
                Msg(
                    "give_up_run",
                    n=f"{GIVE_UP_AFTER:,}",
                    units=self.unit_msg(plural=True),
                    unit=self.unit_msg(),
                    start=f"{self.run_start:,}",
                )
            )
        self.give_up()

    def add(self, line: int, raw: dict, default_id: str) -> None:
        self.read += 1
        self.unreadable_run = 0
        result = build_record(line, raw, self.options, default_id)
        if isinstance(result, list):
            self.bad_records += 1
            self.errors.extend(result)
            return
        first = self.seen_ids.get(result.external_id)
        if first is not None:
            self.errors.add(
                line, Msg("duplicate_id", id=result.external_id, unit=self.unit_msg(), first=first)
            )
            return
        self.seen_ids[result.external_id] = line
        self.records.append(result)

    def resolve_indexes(self) -> None:
        """Numeric answers: 0-based if any is 0, 1-based if any equals its option count."""
        pending = [r for r in self.records if getattr(r, "pending_index", None) is not None]
        if not pending:
            return
        base = None
        if any(r.pending_index == 0 for r in pending):
            base = 0
        elif any(r.pending_index == len(r.options) for r in pending):
            base = 1
        kept = []
        for record in self.records:
            n = getattr(record, "pending_index", None)
            if n is None:
                kept.append(record)
                continue
            if base is None:
                self.errors.add(record.line, Msg("index_base_unknown", n=n))
                continue
            label_index = n - base
            if not 0 <= label_index < len(record.options):
                self.errors.add(record.line, Msg("answer_out_of_range", n=n))
                continue
            record.answer = OPTION_LABELS[label_index]
            kept.append(record)
        self.records = kept


class _GiveUp(Exception):
    pass


def _mapping_for(fmt: str, keys: list[str], options: ImportOptions) -> dict:
    if options.mapping:
        return dict(options.mapping)
    if fmt in LAYOUT_MAPPINGS:
        return dict(LAYOUT_MAPPINGS[fmt])
    return guess_mapping(keys)


def _check_mapping(mapping: dict, keys: list[str], what: Msg) -> None:
    """A mapping that names a field or column the file lacks: one error for the file."""
    known = set(keys)
    missing = []
    for ours, theirs in mapping.items():
        names = theirs if isinstance(theirs, list | tuple) else [theirs]
        missing += [f"{ours}={n}" for n in names if n not in known]
    if missing:
        available = ", ".join(str(k) for k in keys[:30]) or Msg("none")
        raise FormatError(
            Msg("mapping_lacks", what=what, missing=", ".join(missing), available=available)
        )


def _apply_mapping(obj: dict, mapping: dict) -> dict:
    """Rename source fields to ours: mapping is {our field: their field}."""
    raw: dict = {}
    for ours, theirs in mapping.items():
        if ours == "questions":
            continue
        if ours == "options" and isinstance(theirs, list | tuple):
            raw["options"] = [obj.get(col) for col in theirs]
        else:
            raw[ours] = obj.get(theirs)
    return raw


def parse_seed_file(data: bytes, options: ImportOptions) -> ParsedFile:
    _sniff_binary(data)
    # (No strip() of the whole file: that would copy 50 MB to learn it is not empty.)
    if len(data) < 1 << 16 and not _strip_bom(data).strip():
        raise FormatError(Msg("no_records"))
    fmt = options.format
    if fmt not in FORMATS:
        raise FormatError(Msg("unknown_format", format=fmt, formats=", ".join(FORMATS)))
    container = detect_container(data)
    if fmt.endswith("-jsonl") and container == "json":
        raise FormatError(Msg("jsonl_is_document"))
    if fmt == "json" and container == "csv":
        raise FormatError(Msg("not_json"))
    if fmt == "json" and container == "jsonl":
        raise FormatError(Msg("document_is_jsonl"))
    if fmt.endswith("-csv") and container != "csv":
        raise FormatError(Msg("document_not_csv" if container == "json" else "jsonl_not_csv"))
    if fmt.endswith("-jsonl") and container == "csv":
        raise FormatError(Msg("not_jsonl"))
    parser = _Parser(options)
    try:
        if container == "csv":
            parsed = _parse_csv(data, options, parser)
        elif container == "json":
            parsed = _parse_document(data, options, parser)
        else:
            parsed = _parse_jsonl(data, options, parser)
    except _GiveUp as stop:
        first = parser.errors.kept[0] if parser.errors.kept else None
        reason = stop.args[0]
        raise FormatError(
            Msg(
                "gave_up",
                reason=reason,
                unit=parser.unit_msg(),
                line=first.line,
                problem=first.message,
            )
            if first
            else Msg("gave_up_no_problem", reason=reason)
        ) from None
    if parser.read and not parser.records and parser.unreadable == parser.read:
        raise FormatError(
            Msg(
                "nothing_readable",
                unit=parser.unit_msg(),
                problem=parser.errors.kept[0].message if parser.errors.kept else Msg("none"),
            )
        )
    parser.resolve_indexes()
    parsed.records = parser.records
    parsed.errors = parser.errors
    parsed.warnings = parser.warnings
    parsed.unit = parser.unit
    return parsed


def _layout_defaults(fmt: str, obj: dict, raw: dict) -> str:
    """The id a record gets when it carries none; fills detected defaults into `raw`."""
    if fmt == "medqa-jsonl":
        meta = _text(obj.get("meta_info"))
        raw["_source"] = f"MedQA (USMLE) {meta}".strip()
        return _content_id("medqa", {"q": obj.get("question"), "o": obj.get("options")})
    if fmt == "medmcqa-jsonl":
        raw["_source"] = "MedMCQA"
        return _content_id("medmcqa", obj)
    if fmt == "mapped":
        return _content_id("row", obj)
    return _content_id("item", obj)


def _first_keys(objects) -> list[str]:
    keys: dict[str, None] = {}
    for obj in objects:
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(str(k) for k in obj))
    return list(keys)


def _parse_jsonl(data: bytes, options: ImportOptions, parser: _Parser) -> ParsedFile:
    # The mapping comes from the first records' keys; the rest are read streaming.
    sample = []
    # The first megabyte, or the first line if it is longer than that.
    newline = data.find(b"\n")
    head = data[: max(1 << 20, newline + 1 if newline >= 0 else len(data))]
    for _line, _raw, value in _read_jsonl(head, ErrorLog()):
        if isinstance(value, dict):
            sample.append(value)
        if len(sample) >= 50:
            break
    fmt = options.format
    if fmt in {"auto", "medcot-jsonl"}:
        fmt = ("mapped" if options.mapping else _layout_of(set(_first_keys(sample)))) or (
            "medcot-jsonl"
        )
    reader, columns, mapping = _prepare(fmt, sample, options, parser)
    total = 0
    for number, raw_bytes, value in _read_jsonl(data, parser.errors):
        total += 1
        if value is None:
            parser.unreadable_line(number)
            continue
        if parser.duplicate(number, raw_bytes):
            continue
        reader.add(number, value)
        parser.give_up()
    return ParsedFile(
        fmt, [], parser.errors, total, container="jsonl", columns=columns, mapping=mapping
    )


def _nested_keys(sample: list, options: ImportOptions) -> tuple[str, list[str]] | None:
    """When records are case groups: (the key of their question list, their questions' keys)."""
    list_key = (options.mapping or {}).get("questions")
    subs: list = []
    for obj in sample:
        if not isinstance(obj, dict):
            continue
        if not list_key:
            list_key = next(
                (
                    k
                    for k, v in obj.items()
                    if _key(k) in SYNONYMS["questions"]
                    and isinstance(v, list)
                    and any(isinstance(x, dict) for x in v)
                ),
                None,
            )
        value = obj.get(list_key) if list_key else None
        if isinstance(value, list):
            subs += [v for v in value[:20] if isinstance(v, dict)]
    return (list_key, _first_keys(subs)) if list_key and subs else None


GROUP_LEVEL = ("specialty", "type", "language", "source", "difficulty", "cognitive_level")


def _auto_group_mapping(group_keys: list[str], list_key: str, nested_keys: list[str]) -> dict:
    """One flat mapping for case groups: a sub-question's fields are written `questions[].name`;
    the rest are the group's (its case text, its id, options shared by all its questions)."""
    group = guess_mapping([k for k in group_keys if k != list_key])
    flat: dict = {"questions": list_key}
    case = group.get("case_text") or group.get("question")
    if case:
        flat["case_text"] = case
    if group.get("group_id") or group.get("id"):
        flat["group_id"] = group.get("group_id") or group.get("id")
    for ours in ("options", *OPTION_LABELS, *GROUP_LEVEL):
        if ours in group:
            flat[ours] = group[ours]
    sub = guess_mapping(nested_keys)
    for ours in ("questions", "case_text", "group_id"):
        sub.pop(ours, None)
    if "options" in sub:
        for label in OPTION_LABELS:
            flat.pop(label, None)
    for ours, theirs in sub.items():
        flat[ours] = f"{list_key}[].{theirs}"
    return flat


def _split_group_mapping(flat: dict, list_key: str, group_keys, nested_keys) -> tuple[dict, dict]:
    prefix = f"{list_key}[]."
    group, sub = {}, {}
    for ours, theirs in flat.items():
        if ours == "questions":
            continue
        if isinstance(theirs, str) and theirs.startswith(prefix):
            sub[ours] = theirs[len(prefix) :]
        elif isinstance(theirs, str) and theirs not in group_keys and theirs in nested_keys:
            sub[ours] = theirs
        else:
            group[ours] = theirs
    return group, sub


def _check_group_mapping(flat, list_key, group_keys, nested_keys) -> None:
    group, sub = _split_group_mapping(flat, list_key, group_keys, nested_keys)
    _check_mapping(group, group_keys, Msg("what_fields"))
    _check_mapping(sub, nested_keys, Msg("what_nested_fields", key=list_key))


class _Reader:
    """Turns one raw object into records with a mapping (flat, or split for case groups)."""

    def __init__(self, parser, fmt, mapping, nested, group_keys):
        self.parser, self.fmt, self.mapping = parser, fmt, mapping
        self.list_key = nested[0] if nested else None
        if self.list_key:
            self.group_map, self.sub_map = _split_group_mapping(
                mapping, self.list_key, group_keys, nested[1]
            )
            flat = {k: v for k, v in self.group_map.items() if k not in ("case_text", "group_id")}
            self.flat_map = {**flat, **self.sub_map}
        else:
            self.flat_map = mapping

    def add(self, number: int, obj: dict) -> None:
        if self.list_key and isinstance(obj.get(self.list_key), list):
            self._add_group(number, obj)
            return
        raw = _apply_mapping(obj, self.flat_map)
        default_id = _layout_defaults(self.fmt, obj, raw)
        self.parser.add(number, raw, default_id)

    def _add_group(self, number: int, group: dict) -> None:
        parser, list_key = self.parser, self.list_key
        subs = group.get(list_key) or []
        group_raw = _apply_mapping(group, self.group_map)
        case_text = _text(group_raw.get("case_text"))
        group_id = _text(group_raw.get("group_id"))
        if not group_id:
            group_id = _content_id("case", {"case": case_text, "n": len(subs), "g": group})
        if not subs:
            parser.read += 1
            parser.errors.add(number, Msg("case_without_questions", key=list_key))
            return
        for order, sub in enumerate(subs, start=1):
            if not isinstance(sub, dict):
                parser.errors.add(number, Msg("question_not_object", order=order))
                continue
            raw = _apply_mapping(sub, self.sub_map)
            shared = ("options", *OPTION_LABELS, *GROUP_LEVEL)
            if any(raw.get(k) not in (None, "", [], {}) for k in ("options", *OPTION_LABELS)):
                shared = GROUP_LEVEL
            for ours in shared:
                if _text(raw.get(ours)) != "":
                    continue
                if group_raw.get(ours) not in (None, ""):
                    raw[ours] = group_raw[ours]
                elif isinstance(self.sub_map.get(ours), str):
                    # The same name on the group: a shared option list, a case's specialty.
                    value = group.get(self.sub_map[ours])
                    if value not in (None, "", [], {}):
                        raw[ours] = value
            raw["case_text"] = case_text
            raw["group_id"] = group_id
            raw["_group_order"] = order
            if not _text(raw.get("id")):
                raw["id"] = f"{group_id}-{order}"
            kept = len(parser.errors.kept)
            parser.add(number, raw, raw["id"])
            # Say which question of the case: the line (or record) holds the whole case.
            for i in range(kept, len(parser.errors.kept)):
                error = parser.errors.kept[i]
                parser.errors.kept[i] = LineError(
                    error.line, Msg("in_question", order=order, problem=error.message)
                )


def _parse_document(data: bytes, options: ImportOptions, parser: _Parser) -> ParsedFile:
    parser.unit = "record"
    document = _load_document(data)
    path, values = find_records(document, options.records_path)
    del document
    sample = [v for v in values[:50] if isinstance(v, dict)]
    fmt = options.format
    if fmt in {"auto", "json"}:
        fmt = "mapped" if options.mapping else (_layout_of(set(_first_keys(sample))) or "json")
    reader, columns, mapping = _prepare(fmt, sample, options, parser)
    for number, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            parser.read += 1
            parser.errors.add(number, Msg("record_not_object"))
            parser.give_up()
            continue
        raw_bytes = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
        if parser.duplicate(number, raw_bytes):
            continue
        reader.add(number, value)
        parser.give_up()
    return ParsedFile(
        fmt,
        [],
        parser.errors,
        len(values),
        container="json",
        records_path=path,
        columns=columns,
        mapping=mapping,
    )


def _prepare(fmt: str, sample: list, options: ImportOptions, parser: _Parser):
    """The mapping for JSON records (guessed, preset or given), checked against the file."""
    if fmt == "medmcqa-jsonl" and not options.index_base:
        parser.options = ImportOptions(**{**options.__dict__, "index_base": "1"})
    keys = _first_keys(sample)
    nested = _nested_keys(sample, options)
    if nested:
        list_key, nested_keys = nested
        columns = [k for k in keys if k != list_key] + [f"{list_key}[].{k}" for k in nested_keys]
        if options.mapping:
            mapping = dict(options.mapping)
            _check_group_mapping(mapping, list_key, keys, nested_keys)
        else:
            mapping = _auto_group_mapping(keys, list_key, nested_keys)
        columns = [list_key, *columns]
    else:
        columns = keys
        mapping = _mapping_for(fmt, keys, options)
        if options.mapping and sample:
            _check_mapping(mapping, keys, Msg("what_fields"))
    return _Reader(parser, fmt, mapping, nested, keys), columns, mapping


def _looks_like_header(row: list[str]) -> bool:
    names = {_key(c) for c in row}
    known = set().union(*SYNONYMS.values())
    if names & known:
        return True
    return sum(bool(OPTION_COLUMN.match(c.strip())) for c in row) >= 4


def _guess_positions(rows: list[list[str]]) -> dict:
    """question,A,B,C,D[,E],answer (optionally after an id column) in a headerless file."""
    if not rows:
        return {}
    width = max(len(r) for r in rows)
    letter_share = []
    for col in range(width):
        values = [r[col].strip() for r in rows if col < len(r)]
        letters = sum(bool(LETTER.match(v)) for v in values if v)
        letter_share.append(letters / max(1, len(values)))
    answer_cols = [c for c, share in enumerate(letter_share) if share >= 0.8]
    if not answer_cols:
        return {}
    answer = answer_cols[-1]
    mean_len = [
        sum(len(r[c]) for r in rows if c < len(r)) / max(1, len(rows)) for c in range(width)
    ]
    for n_options in (5, 4):
        first_option = answer - n_options
        if first_option < 1:
            continue
        question = first_option - 1
        if question > 1:
            continue
        if n_options == 5 and question == 0 and mean_len[0] < mean_len[1] and answer == 6:
            continue  # id,question,A,B,C,D,answer read better as 4 options
        mapping = {"question": str(question + 1)}
        if question == 1:
            mapping["id"] = "1"
        for i in range(n_options):
            mapping[OPTION_LABELS[i]] = str(first_option + i + 1)
        mapping["answer"] = str(answer + 1)
        return mapping
    return {}


def _csv_has_header(first: list[str], options: ImportOptions) -> bool:
    """Whether the first row names the columns: as the import says, as its layout implies, or
    as the row and the mapping suggest."""
    if options.header == "no":
        return False
    if (
        options.header == "yes"
        or first[:7] == CMMLU_HEADER
        or options.format in {"cmmlu-csv", "medcot-csv"}
    ):
        return True
    has_header = _looks_like_header(first)
    mapping = options.mapping or {}
    if mapping and all(str(v).isdigit() for v in mapping.values() if not isinstance(v, list)):
        has_header = _looks_like_header(first)
    elif mapping and set(map(str, mapping.values())) & set(first):
        has_header = True
    return has_header


def _csv_format(options: ImportOptions, *, header: list[str] | None) -> str:
    """The layout: as the import says, else from the mapping and the header (None: no header)."""
    if options.format != "auto":
        return options.format
    if options.mapping:
        return "mapped"
    if header is not None and header[:7] == CMMLU_HEADER:
        return "cmmlu-csv"
    if header is not None:
        return "medcot-csv"
    return "mapped"


def _csv_mapping(
    options: ImportOptions,
    *,
    fmt: str,
    has_header: bool,
    header: list[str],
    columns: list[str],
    head: list,
) -> dict:
    """Our fields by column: the import's mapping (a column may be named by its position),
    CMMLU's fixed one, a guess from the header, or a guess from the first rows' contents."""
    if options.mapping:
        mapping = dict(options.mapping)
        if has_header:
            # A column may be named by its position too (1 = the first column).
            mapping = {
                k: (
                    header[int(v) - 1]
                    if isinstance(v, str)
                    and v.isdigit()
                    and v not in header
                    and 0 < int(v) <= len(header)
                    else v
                )
                for k, v in mapping.items()
            }
        _check_mapping(mapping, columns, Msg("what_columns"))
        return mapping
    if fmt == "cmmlu-csv":
        if [c.strip() for c in head[0][2]][:7] != CMMLU_HEADER:
            raise FormatError(Msg("cmmlu_header"))
        return dict(LAYOUT_MAPPINGS["cmmlu-csv"])
    if has_header:
        mapping = guess_mapping(header)
        if "question" not in mapping:
            raise FormatError(Msg("layout_no_question_column"))
        return mapping
    mapping = _guess_positions([r[2] for r in head[:50]])
    if not mapping:
        raise FormatError(Msg("layout_no_header"))
    return mapping


def _cmmlu_file(options: ImportOptions, parser: _Parser) -> tuple[str, str]:
    """A CMMLU file's subject and id prefix, from its name; the subject is the specialty
    unless the import gives one."""
    subject, split = _subject_from_file_name(options.file_name)
    if not options.specialty:
        options = ImportOptions(**{**options.__dict__, "specialty": _specialty_label(subject)})
    parser.options = options
    return subject, (f"cmmlu-{split}_{subject}" if split else f"cmmlu-{subject}")


def _parse_csv(data: bytes, options: ImportOptions, parser: _Parser) -> ParsedFile:
    delimiter, rows = _read_csv(data, parser.errors, parser.unreadable_line)
    rows = iter(rows)
    head: list[tuple[int, bytes, list[str]]] = list(itertools.islice(rows, 51))
    if not head:
        raise FormatError(Msg("no_records"))
    first = [c.strip() for c in head[0][2]]
    has_header = _csv_has_header(first, options)
    width = max(len(r[2]) for r in head)
    if has_header:
        header = first
        columns = header
    else:
        header = []
        columns = [str(i + 1) for i in range(width)]
    fmt = _csv_format(options, header=header if has_header else None)
    mapping = _csv_mapping(
        options, fmt=fmt, has_header=has_header, header=header, columns=columns, head=head
    )

    cmmlu_prefix = ""
    if fmt == "cmmlu-csv":
        subject, cmmlu_prefix = _cmmlu_file(options, parser)

    def all_rows():
        yield from head
        yield from rows

    total = 0
    for index, (number, raw_bytes, row) in enumerate(all_rows()):
        if index == 0 and has_header:
            continue
        total += 1
        if has_header and len(row) != len(header):
            parser.errors.add(number, Msg("column_count", n=len(row), header=len(header)))
            parser.unreadable_line(number)
            continue
        if parser.duplicate(number, raw_bytes):
            continue
        obj = dict(zip(columns, row, strict=False))
        raw = _apply_mapping(obj, mapping)
        if fmt == "cmmlu-csv":
            raw["id"] = f"{cmmlu_prefix}-{row[0].strip() or number}"
            raw["_source"] = f"CMMLU {subject}"
            parser.add(number, raw, raw["id"])
        else:
            parser.add(number, raw, _content_id("item" if fmt == "medcot-csv" else "row", obj))
        parser.give_up()
    return ParsedFile(
        fmt,
        [],
        parser.errors,
        total,
        container="tsv" if delimiter == "\t" else "csv",
        header=has_header,
        columns=columns,
        mapping=mapping,
    )


def _subject_from_file_name(file_name: str) -> tuple[str, str]:
    """`test_clinical_knowledge.csv` → ("clinical_knowledge", "test")."""
    stem = PurePath(file_name or "upload").stem
    for split in ("dev", "test", "val", "train"):
        if stem.startswith(split + "_"):
            return stem[len(split) + 1 :], split
    return stem, ""


def _specialty_label(subject: str) -> str:
    return subject.replace("_", " ").strip().capitalize()


def parse_mapping(text) -> dict:
    """`question=Q,A=opa,B=opb,answer=ans` (or `question=1,A=2 …` by column number), or a JSON
    object → {our field: their field}."""
    if isinstance(text, dict):
        mapping = dict(text)
    else:
        text = (text or "").strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as exc:
                raise FormatError(Msg("mapping_invalid_json", detail=exc.msg)) from None
            if not isinstance(mapping, dict):
                raise FormatError(Msg("mapping_not_object"))
        else:
            mapping = {}
            for part in text.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise FormatError(Msg("mapping_entry", part=part))
                ours, theirs = part.split("=", 1)
                mapping[ours.strip()] = theirs.strip()
    mapping = {k: v for k, v in mapping.items() if v not in ("", None)}
    unknown = sorted(set(mapping) - set(MAPPABLE_FIELDS))
    if unknown:
        raise FormatError(
            Msg(
                "mapping_unknown_fields",
                unknown=", ".join(unknown),
                known=", ".join(MAPPABLE_FIELDS),
            )
        )
    if "question" not in mapping or "answer" not in mapping:
        raise FormatError(Msg("mapping_needs_question_answer"))
    return mapping
