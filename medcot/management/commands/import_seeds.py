from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medcot.imports.formats import FORMATS, FormatError, ImportOptions, parse_mapping
from medcot.imports.service import seed_file_import
from medcot.models import Project
from medcot.services import project_create


class Command(BaseCommand):
    help = (
        "Import seed questions into a project. All-or-nothing per file: one bad record imports "
        "nothing and every bad line is reported. Re-importing the same file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path, help="JSONL or CSV files")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--create", action="store_true", help="create the project if it does not exist"
        )
        parser.add_argument("--format", default="auto", choices=sorted(FORMATS))
        parser.add_argument("--specialty", default="", help="specialty for every record")
        parser.add_argument("--language", default="", help="zh or en (default: detect)")
        parser.add_argument("--type", dest="question_type", default="", help="K or S")
        parser.add_argument("--source", default="", help="source for records that name none")
        parser.add_argument(
            "--map",
            dest="mapping",
            default="",
            help="field mapping for other layouts, e.g. question=q,A=opa,B=opb,answer=ans",
        )

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            if not opts["create"]:
                raise CommandError(f"No project {opts['project']!r}; pass --create to make it")
            project = project_create(name=opts["project"], slug=opts["project"])
        try:
            mapping = parse_mapping(opts["mapping"])
        except (FormatError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        failed = 0
        for path in opts["paths"]:
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
            )
            result = seed_file_import(
                project=project, data=data, file_name=path.name, options=options
            )
            batch = result.batch
            if result.ok:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{path.name}: {batch.created_count} imported, {batch.unchanged_count} "
                        f"already present ({batch.format}, {batch.duration_ms} ms)"
                    )
                )
            else:
                failed += 1
                self.stderr.write(
                    self.style.ERROR(
                        f"{path.name}: nothing imported, {batch.error_count} problem(s):"
                    )
                )
                for error in result.errors:
                    where = f"line {error.line}" if error.line else "file"
                    self.stderr.write(f"  {where}: {error.message}")
        if failed:
            raise CommandError(f"{failed} file(s) rejected")
