"""Keep the interface's translations complete: `make messages` runs this.

    manage.py catalogue            regenerate locale/*/django.po and djangojs.po from the code,
                                   list what is untranslated or fuzzy, compile the .mo files
    manage.py catalogue --check    change nothing; fail if the code has strings the catalogues
                                   lack, if any entry is untranslated or fuzzy, or if a .mo is
                                   stale (CI runs this)

Regenerating needs GNU gettext (xgettext, msgmerge, msgcat, msgfmt); reading and checking the
committed files does not. The .po files are written without source locations and sorted, so
they only change when strings change and merge cleanly. See docs/translating.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from medcot import pofile

DOMAINS = ("django", "djangojs")
IGNORE = [
    ".venv",
    "var",
    "tests",
    "bench",
    "docs",
    "README.md",
    "static/vendor",
    "node_modules",
    "test-artifacts",
]
HEADER_DATE = re.compile(r'^"POT-Creation-Date: .*\\n"$', re.MULTILINE)


def _without_date(text: str) -> str:
    return HEADER_DATE.sub("", text)


class Command(BaseCommand):
    help = "Regenerate, check and compile the interface's translation catalogues."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; exit non-zero when the catalogues are incomplete or stale.",
        )

    def handle(self, *args, check: bool = False, **options):
        locale_dir = Path(settings.LOCALE_PATHS[0])
        locales = sorted(p.name for p in locale_dir.iterdir() if (p / "LC_MESSAGES").is_dir()) or [
            "zh_Hans"
        ]
        missing = [t for t in ("xgettext", "msgmerge", "msgcat", "msgfmt") if not shutil.which(t)]
        if missing:
            raise CommandError(
                f"GNU gettext is needed to regenerate the catalogues ({', '.join(missing)} not "
                "found): apt-get install gettext. The committed .mo files work without it."
            )
        before = {
            path: path.read_text(encoding="utf-8") for path in locale_dir.glob("*/LC_MESSAGES/*.po")
        }
        try:
            self._regenerate(locales, locale_dir, before)
            report = self._report(locale_dir)
            changed = [
                path
                for path in locale_dir.glob("*/LC_MESSAGES/*.po")
                if _without_date(path.read_text(encoding="utf-8"))
                != _without_date(before.get(path, ""))
            ]
        finally:
            if check:
                for path in locale_dir.glob("*/LC_MESSAGES/*.po"):
                    if path in before:
                        path.write_text(before[path], encoding="utf-8")
                    else:
                        path.unlink()
        if check:
            stale = []
            for path in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
                stale += [f"{path.with_suffix('.mo')}: {d}" for d in pofile.stale_compiled(path)]
            lines = [f"the code has strings {p} lacks (run `make messages`)" for p in changed]
            lines += report + stale
            if lines:
                raise CommandError("The catalogues are not complete:\n  " + "\n  ".join(lines))
            self.stdout.write(self.style.SUCCESS("Catalogues complete and compiled."))
            return
        call_command("compilemessages", locale=locales, verbosity=0, ignore=IGNORE)
        for line in report:
            self.stdout.write(line)
        if report:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(report)} entries to translate: fill in their msgstr (and drop the "
                    "'fuzzy' flag once checked), then run `make messages` again."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS("Catalogues complete; .mo files compiled."))

    def _regenerate(self, locales, locale_dir: Path, before: dict[Path, str]) -> None:
        common = {
            "locale": locales,
            "ignore_patterns": IGNORE,
            "no_location": True,
            "no_wrap": True,
            "no_obsolete": True,
            "verbosity": 0,
        }
        # Templates include the dataset card (templates/releases/card.md), so .md files count.
        django_ext = ["html", "txt", "py", "md"]
        call_command("makemessages", domain="django", extensions=django_ext, **common)
        call_command("makemessages", domain="djangojs", extensions=["js"], **common)
        for path in locale_dir.glob("*/LC_MESSAGES/*.po"):
            # Sorted by msgid, so a template's strings moving around changes nothing.
            sort = ["msgcat", "--sort-output", "--no-wrap", "--no-location", "--use-first"]
            subprocess.run([*sort, "-o", str(path), str(path)], check=True)  # noqa: S603
            text = path.read_text(encoding="utf-8")
            old = before.get(path)
            if old is not None and _without_date(text) == _without_date(old):
                path.write_text(old, encoding="utf-8")  # only the header's date moved

    def _report(self, locale_dir: Path) -> list[str]:
        lines = []
        for path in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
            rel = path.relative_to(locale_dir.parent)
            lines += [f"{rel}: {problem}" for problem in pofile.problems(path)]
        return lines
