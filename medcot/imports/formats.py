"""Seed file formats: detection, decoding and parsing into uniform `SeedRecord`s.

Parsing never raises on bad records: each problem becomes a `LineError` naming the line, so the
caller can report every bad line at once and import nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

from django.utils.translation import gettext_lazy as _

from medcot.models import OPTION_LABELS, CognitiveLevel, Difficulty, Language, QuestionType

FORMATS = {
    "auto": _("Detect from the file"),
    "medcot-jsonl": _("MedCoT JSONL (docs/import-formats.md)"),
    "medcot-csv": _("MedCoT CSV (docs/import-formats.md)"),
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
)

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
QUESTION_TYPES = frozenset(QuestionType.values)


class FormatError(Exception):
    """The file as a whole cannot be read in the requested format."""


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "message": self.message}


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

    def fingerprint(self) -> str:
        """What "the same question" means for re-imports: stem, options and key."""
        return content_fingerprint(self.stem, self.options, self.answer)


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
    mapping: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedFile:
    format: str
    records: list[SeedRecord]
    errors: list[LineError]
    total_lines: int


# ---------------------------------------------------------------- decoding


def _decode_lines(data: bytes) -> tuple[list[tuple[int, str]], list[LineError]]:
    """Split into (line number, text) pairs, reporting every line that is not valid UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines: list[tuple[int, str]] = []
    errors: list[LineError] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(
                LineError(
                    number,
                    f"bad encoding: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); save the file as UTF-8",
                )
            )
            continue
        lines.append((number, text.rstrip("\r")))
    return lines, errors


def _csv_rows(lines: list[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """CSV rows with the line number each starts on (quoted fields may span lines)."""
    numbered = iter(lines)
    buffer: list[str] = []
    start = 0
    for number, text in numbered:
        if not buffer:
            start = number
        buffer.append(text)
        joined = "\n".join(buffer)
        if joined.count('"') % 2:  # an open quoted field continues on the next line
            continue
        buffer = []
        if not joined.strip():
            continue
        yield start, next(csv.reader(io.StringIO(joined)))
    if buffer:
        yield start, next(csv.reader(io.StringIO("\n".join(buffer) + '"')))


# ---------------------------------------------------------------- detection


def detect_format(data: bytes, file_name: str = "") -> str:
    head = data[:65536].lstrip(b"\xef\xbb\xbf").lstrip()
    if not head:
        raise FormatError("the file holds no records")
    if head.startswith(b"{"):
        first = head.split(b"\n", 1)[0]
        try:
            record = json.loads(first.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            return "medcot-jsonl"
        keys = set(record) if isinstance(record, dict) else set()
        if "answer_idx" in keys and "options" in keys:
            return "medqa-jsonl"
        if {"opa", "opb", "opc", "opd", "cop"} <= keys:
            return "medmcqa-jsonl"
        return "medcot-jsonl"
    header_line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip("\r")
    header = [h.strip() for h in next(csv.reader(io.StringIO(header_line)), [])]
    if header[:7] == ["", "Question", "A", "B", "C", "D", "Answer"]:
        return "cmmlu-csv"
    lowered = {h.lower() for h in header}
    if ("question" in lowered or "stem" in lowered) and "answer" in lowered:
        return "medcot-csv"
    raise FormatError(
        "Could not recognise the file's layout. Choose a format, or give a field mapping "
        "(see docs/import-formats.md)."
    )


# ---------------------------------------------------------------- normalisation


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


def build_record(
    line: int, raw: dict, options: ImportOptions, default_id: str
) -> SeedRecord | list[LineError]:
    """Validate one raw record (already mapped to our field names)."""
    problems: list[str] = []
    stem = _text(raw.get("question"))
    if not stem:
        problems.append("empty stem (no question text)")

    opts: dict[str, str] = {}
    raw_options = raw.get("options")
    if isinstance(raw_options, dict):
        items = [(str(k).strip().upper(), _text(v)) for k, v in raw_options.items()]
    elif isinstance(raw_options, list):
        items = [
            (OPTION_LABELS[i] if i < 5 else f"#{i + 1}", _text(v))
            for i, v in enumerate(raw_options)
        ]
    elif raw_options not in (None, ""):
        items = []
        problems.append("options must be an object (A → text) or a list")
    else:
        items = [(label, _text(raw.get(label))) for label in OPTION_LABELS]
        items = [(label, text) for label, text in items if text or label in "ABCD"]
        # Trailing empty E is simply absent; an empty A–D is reported below.
    present = [(label, text) for label, text in items if text or label in "ABCD"]
    if len(present) > 5:
        problems.append(f"too many options ({len(present)}; at most 5, A–E)")
    else:
        for label, text in present:
            if label not in OPTION_LABELS:
                problems.append(f"option label {label!r} is not one of A–E")
            elif not text:
                problems.append(f"option {label} is empty")
            else:
                opts[label] = text
        filled = [label for label, text in present if text]
        if len(filled) < 4 and not problems:
            problems.append(f"too few options ({len(filled)}; need 4 or 5)")
        labels = sorted(opts)
        if len(labels) >= 4 and labels != list(OPTION_LABELS[: len(labels)]):
            problems.append(
                f"options must be labelled consecutively from A (got {', '.join(labels)})"
            )

    answer = _text(raw.get("answer")).upper().strip("()（）. ")
    if not answer:
        problems.append("missing answer key")
    elif answer not in opts and len(opts) >= 4:
        problems.append(f"answer key {answer!r} is not among the options {', '.join(sorted(opts))}")

    qtype = _text(raw.get("type")) or options.question_type or QuestionType.K
    qtype = qtype.upper()
    if qtype not in QUESTION_TYPES:
        problems.append(f"question type {qtype!r} must be K or S")

    level_raw = _text(raw.get("cognitive_level")).lower().replace(" ", "_")
    level = _LEVELS.get(level_raw, "") if level_raw else ""
    if level_raw and not level:
        problems.append(
            f"unknown cognitive level {level_raw!r} (recall, interpretation, problem_solving)"
        )
    diff_raw = _text(raw.get("difficulty")).lower()
    difficulty = _DIFFICULTIES.get(diff_raw, "") if diff_raw else ""
    if diff_raw and not difficulty:
        problems.append(f"unknown difficulty {diff_raw!r} (easy, moderate, hard)")

    language = normalise_language(_text(raw.get("language")) or options.language, stem)
    if language is None:
        problems.append(f"unknown language {_text(raw.get('language'))!r} (zh or en)")

    external_id = _text(raw.get("id")) or default_id
    if len(external_id) > 200:
        problems.append("id is longer than 200 characters")

    if problems:
        return [LineError(line, p) for p in problems]
    return SeedRecord(
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
        source=(_text(raw.get("source")) or options.source)[:300],
        cot=_text(raw.get("cot")),
    )


def _content_id(prefix: str, raw: dict) -> str:
    """A stable id for records that carry none: a digest of the record's keys and values."""
    digest = hashlib.sha256()
    for key in sorted(raw, key=str):
        value = raw[key]
        if isinstance(value, dict):
            value = "\x1e".join(f"{k}\x1d{v}" for k, v in sorted(value.items(), key=str))
        digest.update(f"{key}\x1f{value}\x1e".encode())
    return f"{prefix}-{digest.hexdigest()[:16]}"


# ---------------------------------------------------------------- readers


def _read_jsonl(data: bytes) -> tuple[list[tuple[int, dict]], list[LineError], int]:
    lines, errors = _decode_lines(data)
    out: list[tuple[int, dict]] = []
    for number, text in lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            errors.append(LineError(number, "each line must be a JSON object"))
            continue
        out.append((number, value))
    return out, errors, len(lines) + len([e for e in errors if e.message.startswith("bad enc")])


def _read_csv(data: bytes) -> tuple[list[str], list[tuple[int, dict]], list[LineError], int]:
    lines, errors = _decode_lines(data)
    rows = list(_csv_rows(lines))
    if not rows:
        return [], [], errors, 0
    header = [h.strip() for h in rows[0][1]]
    out: list[tuple[int, dict]] = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            errors.append(
                LineError(number, f"has {len(row)} columns; the header has {len(header)}")
            )
            continue
        out.append((number, dict(zip(header, row, strict=True))))
    return header, out, errors, len(rows) - 1


def _subject_from_file_name(file_name: str) -> tuple[str, str]:
    """`test_clinical_knowledge.csv` → ("clinical_knowledge", "test")."""
    stem = PurePath(file_name or "upload").stem
    for split in ("dev", "test", "val", "train"):
        if stem.startswith(split + "_"):
            return stem[len(split) + 1 :], split
    return stem, ""


def _specialty_label(subject: str) -> str:
    return subject.replace("_", " ").strip().capitalize()


def parse_seed_file(data: bytes, options: ImportOptions) -> ParsedFile:
    fmt = options.format
    if fmt == "auto":
        fmt = "mapped" if options.mapping else detect_format(data, options.file_name)
    if fmt not in FORMATS or fmt == "auto":
        raise FormatError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")

    records: list[SeedRecord] = []
    errors: list[LineError] = []

    def add(line: int, raw: dict, default_id: str) -> None:
        result = build_record(line, raw, options, default_id)
        if isinstance(result, list):
            errors.extend(result)
        else:
            records.append(result)

    if fmt in {"medcot-jsonl", "medqa-jsonl", "medmcqa-jsonl"} or (
        fmt == "mapped" and data.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"{")
    ):
        rows, errors, total = _read_jsonl(data)
        for line, obj in rows:
            if fmt == "medqa-jsonl":
                meta = _text(obj.get("meta_info"))
                raw = {
                    "question": obj.get("question"),
                    "options": obj.get("options"),
                    "answer": obj.get("answer_idx"),
                    "source": f"MedQA (USMLE) {meta}".strip(),
                }
                add(
                    line,
                    raw,
                    _content_id("medqa", {"q": obj.get("question"), "o": obj.get("options")}),
                )
            elif fmt == "medmcqa-jsonl":
                cop = _text(obj.get("cop"))
                answer = (
                    OPTION_LABELS[int(cop) - 1] if cop.isdigit() and 1 <= int(cop) <= 4 else cop
                )
                raw = {
                    "id": obj.get("id"),
                    "question": obj.get("question"),
                    "A": obj.get("opa"),
                    "B": obj.get("opb"),
                    "C": obj.get("opc"),
                    "D": obj.get("opd"),
                    "answer": answer,
                    "specialty": obj.get("subject_name"),
                    "source": "MedMCQA",
                }
                add(line, raw, _content_id("medmcqa", obj))
            elif fmt == "mapped":
                add(line, _apply_mapping(obj, options.mapping), _content_id("row", obj))
            else:
                raw = dict(obj)
                raw.setdefault("question", obj.get("stem"))
                add(line, raw, _content_id("item", obj))
        return ParsedFile(fmt, records, errors, total)

    header, rows, errors, total = _read_csv(data)
    if fmt == "cmmlu-csv":
        if header[:7] != ["", "Question", "A", "B", "C", "D", "Answer"]:
            raise FormatError("A CMMLU-style CSV starts with the header ,Question,A,B,C,D,Answer")
        subject, split = _subject_from_file_name(options.file_name)
        prefix = f"cmmlu-{split}_{subject}" if split else f"cmmlu-{subject}"
        opts = options
        if not options.specialty:
            opts = ImportOptions(**{**options.__dict__, "specialty": _specialty_label(subject)})
        for line, row in rows:
            raw = {
                "id": f"{prefix}-{row.get('', '').strip() or line}",
                "question": row.get("Question"),
                "A": row.get("A"),
                "B": row.get("B"),
                "C": row.get("C"),
                "D": row.get("D"),
                "answer": row.get("Answer"),
                "source": f"CMMLU {subject}",
            }
            result = build_record(line, raw, opts, raw["id"])
            if isinstance(result, list):
                errors.extend(result)
            else:
                records.append(result)
    elif fmt == "mapped":
        for line, row in rows:
            add(line, _apply_mapping(row, options.mapping), _content_id("row", row))
    else:
        lower = {h.lower(): h for h in header}
        if "question" not in lower and "stem" not in lower:
            raise FormatError("A MedCoT CSV needs a 'question' column (see docs/import-formats.md)")
        for line, row in rows:
            raw = {key.lower(): value for key, value in row.items()}
            raw.setdefault("question", raw.get("stem"))
            for label in OPTION_LABELS:
                raw[label] = row.get(label, row.get(label.lower(), ""))
            add(line, raw, _content_id("item", row))
    return ParsedFile(fmt, records, errors, total)


def _apply_mapping(obj: dict, mapping: dict[str, str]) -> dict:
    """Rename source fields to ours: mapping is {our field: their field}."""
    raw: dict = {}
    for ours, theirs in mapping.items():
        if ours == "options" and isinstance(theirs, list | tuple):
            raw["options"] = [obj.get(col) for col in theirs]
        else:
            raw[ours] = obj.get(theirs)
    return raw


def parse_mapping(text: str) -> dict[str, str]:
    """`question=Q,A=opa,B=opb,answer=ans` or a JSON object → {our field: their field}."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        mapping = json.loads(text)
    else:
        mapping = {}
        for part in text.split(","):
            if "=" not in part:
                raise FormatError(f"Mapping entries look like field=column, not {part!r}")
            ours, theirs = part.split("=", 1)
            mapping[ours.strip()] = theirs.strip()
    unknown = sorted(set(mapping) - set(MAPPABLE_FIELDS))
    if unknown:
        raise FormatError(
            f"Unknown field(s) in mapping: {', '.join(unknown)}; "
            f"known: {', '.join(MAPPABLE_FIELDS)}"
        )
    if "question" not in mapping or "answer" not in mapping:
        raise FormatError("A mapping must name at least the question and answer fields")
    return mapping
