"""The release files, written from an iterator of records with flat memory.

Every writer is deterministic: a fixed column order, fixed key order in JSON, "\\n" line ends, no
timestamps, Parquet row groups of a fixed size, and zip entries with a fixed date and mode. The
same records therefore give the same bytes, on any machine with the same library versions.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medcot.models import OPTION_LABELS
from review.judge.release import ARROW_TYPE as JUDGE_ARROW_TYPE
from review.judge.release import FIELD as JUDGE_FIELD
from review.judge.release import FIELD_MEANING as JUDGE_FIELD_MEANING

DIMENSIONS = (
    "medical_correctness",
    "reasoning_structure",
    "information_sufficiency",
    "terminology_clarity",
    "clinical_utility",
)

ROW_GROUP = 5000
BUFFER = 1 << 20
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Level 1: the text files still shrink several times over, at a fraction of the time of the
# default level 6, which matters for a million-item release.
ZIP_LEVEL = 1

# The order of the fields in every format, and what each one means (shown in the dataset card).
FIELDS: tuple[tuple[str, str], ...] = (
    ("item_id", "MedCoT item id (stable across releases)."),
    ("external_id", "The id the question was imported or synthesized with."),
    (
        "seed_family_id",
        "Item id of the seed question this item was expanded from (itself for a seed).",
    ),
    ("seed_family_external_id", "External id of that seed."),
    (
        "group_id",
        "Case group: questions sharing one case text or option list (null when standalone).",
    ),
    ("group_order", "The question's place in its case group (null when standalone)."),
    ("case_text", "The case text shared by the group's questions (null when none)."),
    ("kind", "seed or synthetic."),
    ("question_type", "K = best choice; S = best choice for a case summary."),
    ("specialty", "Clinical specialty."),
    ("cognitive_level", "recall, interpretation or problem_solving (null when unknown)."),
    ("difficulty", "easy, moderate or hard (null when unknown)."),
    ("language", "zh or en."),
    ("question", "The question stem."),
    ("options", "Options A–E (E is null for four-option questions)."),
    ("answer", "The key, a letter A–E."),
    ("answer_text", "The text of the keyed option."),
    ("cot", "The validated chain-of-thought explanation."),
    ("version", "Content version number released (1 = as first written)."),
    ("revision_status", "unrevised or modified (edited by a reviewer or an expert panel)."),
    ("first_pass_result", "First-pass review outcome: pass or fixed."),
    ("first_pass_score", "1 if relevance, correctness and sufficiency were all judged 1, else 0."),
    ("reanswer_attempts", "How many times the model re-answered without the explanation."),
    ("first_correct_attempt", "The first re-answer attempt that was correct (null if none)."),
    ("escalated", "True if five failed re-answers sent the item to an expert panel."),
    ("rubric_scores", "Expert panel scores 0–2 per dimension, one entry per expert and round."),
    ("consensus_size", "Number of experts who agreed on the key and approved the phrasing."),
    ("consensus_experts", "Their pseudonymous ids."),
    (JUDGE_FIELD, JUDGE_FIELD_MEANING),
    (
        "verdict_confidence",
        "Posterior probability that this version is valid (Dawid–Skene over every human verdict; "
        "null before the first refit).",
    ),
    ("n_verdicts", "Number of human verdicts on this version behind that posterior."),
)
FIELD_NAMES = tuple(name for name, _ in FIELDS)

CSV_COLUMNS = (
    *FIELD_NAMES[: FIELD_NAMES.index("options")],
    *(f"option_{label.lower()}" for label in OPTION_LABELS),
    *FIELD_NAMES[FIELD_NAMES.index("options") + 1 :],
)

RUBRIC_TYPE = pa.struct(
    [("expert", pa.string()), ("round", pa.int32())] + [(d, pa.int8()) for d in DIMENSIONS]
)
SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("external_id", pa.string()),
        ("seed_family_id", pa.int64()),
        ("seed_family_external_id", pa.string()),
        ("group_id", pa.string()),
        ("group_order", pa.int32()),
        ("case_text", pa.string()),
        ("kind", pa.string()),
        ("question_type", pa.string()),
        ("specialty", pa.string()),
        ("cognitive_level", pa.string()),
        ("difficulty", pa.string()),
        ("language", pa.string()),
        ("question", pa.string()),
        ("options", pa.struct([(label, pa.string()) for label in OPTION_LABELS])),
        ("answer", pa.string()),
        ("answer_text", pa.string()),
        ("cot", pa.string()),
        ("version", pa.int32()),
        ("revision_status", pa.string()),
        ("first_pass_result", pa.string()),
        ("first_pass_score", pa.int8()),
        ("reanswer_attempts", pa.int32()),
        ("first_correct_attempt", pa.int32()),
        ("escalated", pa.bool_()),
        ("rubric_scores", pa.list_(RUBRIC_TYPE)),
        ("consensus_size", pa.int32()),
        ("consensus_experts", pa.list_(pa.string())),
        (JUDGE_FIELD, JUDGE_ARROW_TYPE),
        ("verdict_confidence", pa.float64()),
        ("n_verdicts", pa.int32()),
    ]
)
assert tuple(SCHEMA.names) == FIELD_NAMES

SYSTEM_PROMPTS = {
    "zh": (
        "你是一名临床医学专家。请逐项分析每个选项，说明其正确或错误的理由，然后给出唯一的最佳答案。"
    ),
    "en": (
        "You are a clinical expert. Reason through the question, explain why each option is "
        "correct or incorrect, then give the single best answer."
    ),
}
ANSWER_LINE = {"zh": "答案：{letter}. {text}", "en": "Answer: {letter}. {text}"}


class RecordError(ValueError):
    """A record does not have the fields a release needs."""


def _json_line(value: dict) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


_CSV_PLAIN = FIELD_NAMES[: FIELD_NAMES.index("options")]
_CSV_REST = FIELD_NAMES[FIELD_NAMES.index("options") + 1 :]


def _csv_value(value):
    # The csv module writes None as an empty cell; only booleans and lists need help.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        return str(value)
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(values) -> bytes:
    """One CSV line as the csv module writes it with its defaults (minimal quoting, quotes
    doubled) and "\n" line ends, an order of magnitude faster for long text cells."""
    line = ",".join(map(_csv_cell, values))
    if not line and len(values) == 1:
        # A lone empty cell is quoted so that the line is not read as a blank line.
        line = '""'
    return (line + "\n").encode("utf-8")


def csv_row(record: dict) -> list:
    options = record["options"]
    return [
        *(record[name] for name in _CSV_PLAIN),
        *(options.get(label) for label in OPTION_LABELS),
        *(_csv_value(record[name]) for name in _CSV_REST),
    ]


def chat_record(record: dict) -> dict:
    """The record as a supervised fine-tuning example: the question with its options from the
    user, and from the assistant the validated explanation as its reasoning and the key as its
    answer."""
    language = record["language"] if record["language"] in SYSTEM_PROMPTS else "en"
    options = "\n".join(
        f"{label}. {text}" for label, text in record["options"].items() if text is not None
    )
    # A question of a case group is asked with its case.
    case = f"{record['case_text']}\n\n" if record.get("case_text") else ""
    answer = ANSWER_LINE[language].format(letter=record["answer"], text=record["answer_text"])
    return {
        "item_id": record["item_id"],
        "group_id": record.get("group_id"),
        "language": record["language"],
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPTS[language]},
            {"role": "user", "content": f"{case}{record['question']}\n\n{options}"},
            {
                "role": "assistant",
                "content": f"{record['cot']}\n\n{answer}".strip(),
                "reasoning_content": record["cot"],
            },
        ],
        "answer": record["answer"],
    }


class HashingFile:
    """A binary file that hashes what is written to it, so a multi-gigabyte file need not be
    read back for its checksum."""

    def __init__(self, path: Path):
        self._file = open(path, "wb", buffering=BUFFER)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()

    def info(self) -> dict:
        return {"sha256": self._hash.hexdigest(), "bytes": self.size}


class ReleaseWriter:
    """Writes data.jsonl, data.csv, data.parquet and chat.jsonl in one pass over the records.

    Holds at most one Parquet row group in memory."""

    def __init__(self, directory: Path, *, row_group: int = ROW_GROUP):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.row_group = row_group
        self.count = 0
        self._jsonl = HashingFile(self.directory / "data.jsonl")
        self._chat = HashingFile(self.directory / "chat.jsonl")
        self._csv_file = HashingFile(self.directory / "data.csv")
        self._csv_file.write(csv_line(CSV_COLUMNS))
        self._parquet_file = HashingFile(self.directory / "data.parquet")
        self._parquet = pq.ParquetWriter(
            self._parquet_file, SCHEMA, compression="zstd", write_statistics=True
        )
        self._buffer: list[dict] = []
        self._last_id: int | None = None

    def write(self, record: dict) -> None:
        if tuple(record) != FIELD_NAMES:
            raise RecordError(f"Record fields differ from the release schema: {list(record)}")
        if self._last_id is not None and record["item_id"] <= self._last_id:
            # The diff and byte-identical rebuilds rely on item id order.
            raise RecordError("Records must come in increasing item id order")
        self._last_id = record["item_id"]
        self._jsonl.write(_json_line(record))
        self._chat.write(_json_line(chat_record(record)))
        self._csv_file.write(csv_line(csv_row(record)))
        self._buffer.append(record)
        if len(self._buffer) >= self.row_group:
            self._flush()
        self.count += 1

    def _flush(self) -> None:
        if self._buffer:
            # Column by column: pa.array on one field's values is many times faster than
            # Table.from_pylist on the records.
            arrays = [
                pa.array([r[name] for r in self._buffer], type=field.type)
                for name, field in zip(FIELD_NAMES, SCHEMA, strict=True)
            ]
            self._parquet.write_table(
                pa.Table.from_arrays(arrays, schema=SCHEMA), row_group_size=self.row_group
            )
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._parquet.close()
        for handle in self._handles():
            handle.close()

    def abort(self) -> None:
        self._parquet.close()
        for handle in self._handles():
            handle.close()

    def _handles(self) -> tuple[HashingFile, ...]:
        return (self._jsonl, self._chat, self._csv_file, self._parquet_file)

    @property
    def digests(self) -> dict[str, dict]:
        """{file name: {"sha256", "bytes"}} of the four data files, once closed."""
        return {
            "data.jsonl": self._jsonl.info(),
            "chat.jsonl": self._chat.info(),
            "data.csv": self._csv_file.info(),
            "data.parquet": self._parquet_file.info(),
        }

    def __enter__(self) -> ReleaseWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_records(directory: Path, records: Iterable[dict], *, row_group: int = ROW_GROUP) -> int:
    with ReleaseWriter(directory, row_group=row_group) as writer:
        for record in records:
            writer.write(record)
    return writer.count


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_files(directory: Path) -> list[str]:
    """Every file under the directory, as sorted relative POSIX paths."""
    root = Path(directory)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def write_checksums(
    directory: Path, names: Iterable[str], *, known: dict[str, dict] | None = None
) -> dict[str, dict]:
    """checksums.sha256 in `sha256sum` format over the given files; returns name → digest and
    size for each, the checksum file included. `known` digests (hashed while writing) are
    used as they are instead of reading the file again."""
    root = Path(directory)
    known = known or {}
    info = {}
    lines = []
    for name in sorted(names):
        path = root / name
        info[name] = known.get(name) or {
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
        }
        lines.append(f"{info[name]['sha256']}  {name}\n")
    checksum_path = root / "checksums.sha256"
    checksum_path.write_text("".join(lines), encoding="utf-8", newline="\n")
    info["checksums.sha256"] = {
        "sha256": file_sha256(checksum_path),
        "bytes": checksum_path.stat().st_size,
    }
    return info


def write_zip(zip_path: Path, directory: Path, names: Iterable[str], *, prefix: str) -> None:
    """One zip of the files, streamed entry by entry. Fixed entry dates and permissions and a
    sorted entry order make it byte-identical for identical files."""
    root = Path(directory)
    with zipfile.ZipFile(zip_path, "w", allowZip64=True) as archive:
        for name in sorted(names):
            info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=ZIP_DATE)
            # Parquet is compressed already; deflating it again costs time and saves nothing.
            stored = name.endswith(".parquet")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            # ZipFile.open() takes the level from the ZipInfo it is given, not from the
            # archive (the attribute is public as `compress_level` from Python 3.13 on).
            info._compresslevel = ZIP_LEVEL
            info.external_attr = 0o644 << 16
            info.create_system = 3
            with (
                open(root / name, "rb") as source,
                archive.open(info, "w", force_zip64=True) as out,
            ):
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)


def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
