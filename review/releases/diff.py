"""What changed between two releases, read from their data.jsonl files.

Both files are sorted by item id, so a merge join walks them once, side by side, with one
record of each in memory. Lines that are byte-identical are not even parsed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

PREFIX = '{"item_id":'


def _item_id(line: str) -> int:
    if line.startswith(PREFIX):
        end = line.find(",", len(PREFIX))
        if end > 0:
            return int(line[len(PREFIX) : end])
    return int(json.loads(line)["item_id"])


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield _item_id(line), line


def changed_fields(old: dict, new: dict) -> list[str]:
    names = list(new) + [k for k in old if k not in new]
    return [name for name in names if old.get(name) != new.get(name)]


def release_diff(old_path: Path, new_path: Path) -> Iterator[dict]:
    """Yields {"change": "added" | "removed" | "changed", "item_id": ..., "fields": [...]} in
    item id order ("fields" only for changes)."""
    old_iter, new_iter = _lines(Path(old_path)), _lines(Path(new_path))
    old, new = next(old_iter, None), next(new_iter, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old[0] < new[0]):
            yield {"change": "removed", "item_id": old[0]}
            old = next(old_iter, None)
        elif old is None or new[0] < old[0]:
            yield {"change": "added", "item_id": new[0]}
            new = next(new_iter, None)
        else:
            if old[1] != new[1]:
                fields = changed_fields(json.loads(old[1]), json.loads(new[1]))
                yield {"change": "changed", "item_id": new[0], "fields": fields}
            old, new = next(old_iter, None), next(new_iter, None)


def diff_summary(changes) -> dict:
    """Counts per kind of change and per changed field, consuming the iterator."""
    summary = {"added": 0, "removed": 0, "changed": 0, "fields": {}}
    for change in changes:
        summary[change["change"]] += 1
        for name in change.get("fields", ()):
            summary["fields"][name] = summary["fields"].get(name, 0) + 1
    summary["fields"] = dict(sorted(summary["fields"].items(), key=lambda kv: (-kv[1], kv[0])))
    return summary


def write_diff(old_path: Path, new_path: Path, out_path: Path) -> dict:
    """diff.jsonl: one line per change; returns the summary."""

    def tee():
        with open(out_path, "wb") as out:
            for change in release_diff(old_path, new_path):
                out.write(
                    (json.dumps(change, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
                )
                yield change

    return diff_summary(tee())
