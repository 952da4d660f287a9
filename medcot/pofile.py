"""A small reader for gettext .po files: enough to list what is untranslated or fuzzy and to
compare a catalogue with its compiled .mo, with no system gettext installed."""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[sdifr]|\{\w*\}")


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str = ""
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values()) and not self.fuzzy

    @property
    def key(self) -> str:
        """The key under which gettext's .mo stores the entry."""
        return f"{self.msgctxt}\x04{self.msgid}" if self.msgctxt is not None else self.msgid


def _string(line: str) -> str:
    return ast.literal_eval(line)


def read(path: Path) -> list[Entry]:
    """The entries of a .po file (blocks separated by blank lines, as gettext writes them),
    header (msgid "") included, obsolete ones marked."""
    entries: list[Entry] = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        entry = Entry()
        target: tuple[str, int] | None = None
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("#~"):
                entry.obsolete = True
                line = line[2:].strip()
            if line.startswith("#,"):
                entry.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith('"'):
                if target is not None:
                    name, index = target
                    if name == "msgstr":
                        entry.msgstr[index] += _string(line)
                    else:
                        setattr(entry, name, (getattr(entry, name) or "") + _string(line))
                continue
            keyword, _, rest = line.partition(" ")
            plural = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            if plural or keyword == "msgstr":
                index = int(plural.group(1)) if plural else 0
                entry.msgstr[index] = _string(rest)
                target = ("msgstr", index)
            elif keyword in ("msgid", "msgid_plural", "msgctxt"):
                setattr(entry, keyword, _string(rest))
                target = (keyword, 0)
        if entry.msgstr or entry.msgid:
            entries.append(entry)
    return entries


def messages(path: Path) -> list[Entry]:
    """The translatable entries: no header, no obsolete ones."""
    return [e for e in read(path) if e.msgid and not e.obsolete]


def problems(path: Path) -> list[str]:
    """What keeps a catalogue from being complete: untranslated or fuzzy entries, and
    translations whose placeholders differ from the source's."""
    found = []
    for entry in messages(path):
        label = entry.msgid if not entry.msgctxt else f"[{entry.msgctxt}] {entry.msgid}"
        if entry.fuzzy:
            found.append(f"fuzzy: {label!r}")
        elif not entry.translated:
            found.append(f"untranslated: {label!r}")
        else:
            if "python-format" not in entry.flags and "javascript-format" not in entry.flags:
                continue
            wanted = sorted(PLACEHOLDER.findall(entry.msgid_plural or entry.msgid))
            for text in entry.msgstr.values():
                have = sorted(PLACEHOLDER.findall(text))
                if sorted(set(have)) != sorted(set(wanted)):
                    found.append(f"placeholders {wanted} ≠ {have}: {label!r}")
    return found


def stale_compiled(po: Path) -> list[str]:
    """Where the .mo next to `po` disagrees with it (missing, or an entry differs)."""
    mo = po.with_suffix(".mo")
    if not mo.exists():
        return [f"{mo} is missing"]
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)._catalog
    differences = []
    expected_keys = set()
    for entry in messages(po):
        if not entry.translated:
            continue
        if entry.msgid_plural:
            for index, text in entry.msgstr.items():
                expected_keys.add((entry.key, index))
                if compiled.get((entry.key, index)) != text:
                    differences.append(entry.msgid)
        else:
            expected_keys.add(entry.key)
            if compiled.get(entry.key) != entry.msgstr[0]:
                differences.append(entry.msgid)
    extra = [k for k in compiled if k and k not in expected_keys]
    if extra:
        differences.append(f"{len(extra)} compiled entries are no longer in the .po")
    return differences
