from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from medcot.imports.formats import FORMATS, FormatError, ImportOptions, parse_mapping
from medcot.imports.service import seed_file_import
from medcot.licenses import SOURCE_LICENSES, UNKNOWN
from medcot.models import Project
from medcot.services import project_create


class Command(BaseCommand):
    help = (
        "Import seed questions into a project. All-or-nothing per file: one bad record imports "
        "nothing and the bad lines are reported. Re-importing the same file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path, help="JSON, JSONL, CSV or TSV files")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--create", action="store_true", help="create the project if it does not exist"
        )
        parser.add_argument("--format", default="auto", choices=sorted(FORMATS))
        parser.add_argument("--specialty", default="", help="specialty for every record")
        parser.add_argument("--language", default="", help="zh or en (default: detect)")
        parser.add_argument("--type", dest="question_type", default="", help="K or S")
        parser.add_argument(
            "--source", default="", help="source for every record (wins over a detected one)"
        )
        parser.add_argument(
            "--license",
            default=UNKNOWN,
            choices=[code for code, _label in SOURCE_LICENSES],
            help="the licence of the file's questions",
        )
        parser.add_argument(
            "--map",
            dest="mapping",
            default="",
            help="field mapping for other layouts, e.g. question=q,A=opa,B=opb,answer=ans, or "
            "by column number: question=1,A=2,B=3,C=4,D=5,answer=6",
        )
        parser.add_argument(
            "--records",
            dest="records_path",
            default="",
            help="JSON documents: where the records are, e.g. data or data.questions",
        )
        parser.add_argument(
            "--no-header",
            dest="header",
            action="store_const",
            const="no",
            default="auto",
            help="CSV/TSV: the first row is data, not column names",
        )
        parser.add_argument(
            "--answer-index-base",
            dest="index_base",
            default="",
            choices=["", "0", "1"],
            help="numeric answers count options from 0 or 1 (default: decided from the file)",
        )

    def handle(self, *args, **opts):
        try:
            mapping = parse_mapping(opts["mapping"])
        except (FormatError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None and not opts["create"]:
            raise CommandError(f"No project {opts['project']!r}; pass --create to make it")
        created = project is None
        failed = 0
        # A project made here and left empty (every file rejected) is not kept.
        with transaction.atomic():
            if created:
                project = project_create(name=opts["project"], slug=opts["project"])
            for path in opts["paths"]:
                failed += not self._import(project, path, mapping, opts)
            if created and not project.items.exists():
                transaction.set_rollback(True)
                self.stderr.write(f"Project {opts['project']!r} was not created: nothing imported.")
        if failed:
            raise CommandError(f"{failed} file(s) rejected")

    def _import(self, project, path: Path, mapping: dict, opts) -> bool:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
        options = ImportOptions(
            format="mapped" if mapping and opts["format"] == "auto" else opts["format"],
            file_name=path.name,
            specialty=opts["specialty"],
            language=opts["language"],
            question_type=opts["question_type"],
            source=opts["source"],
            mapping=mapping,
            records_path=opts["records_path"],
            header=opts["header"],
            index_base=opts["index_base"],
            license=opts["license"],
        )
        result = seed_file_import(project=project, data=data, file_name=path.name, options=options)
        batch = result.batch
        for warning in batch.warnings:
            self.stdout.write(f"  warning: {warning['message']}")
        if batch.warning_count > len(batch.warnings):
            self.stdout.write(f"  … {batch.warning_count - len(batch.warnings)} more warning(s)")
        if result.ok:
            groups = project.items.filter(import_batch=batch).exclude(group_id="")
            groups = groups.values("group_id").distinct().count()
            self.stdout.write(
                self.style.SUCCESS(
                    f"{path.name}: {batch.created_count} imported, {batch.unchanged_count} "
                    f"already present ({batch.format}, {batch.duration_ms} ms)"
                    + (f", {groups} case group(s)" if groups else "")
                )
            )
            return True
        self.stderr.write(
            self.style.ERROR(
                f"{path.name}: nothing imported ({batch.get_state_display().lower()}), "
                f"{batch.error_count} problem(s):"
            )
        )
        for error in result.errors:
            where = f"line {error.line}" if error.line else "file"
            self.stderr.write(f"  {where}: {error.message}")
        if batch.error_count > len(result.errors):
            self.stderr.write(f"  … and {batch.error_count - len(result.errors)} more")
        return False
