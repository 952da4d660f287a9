from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medcot.models import Project
from medcot.transfer import project_export


class Command(BaseCommand):
    help = "Export a whole project (items, versions, events, imports, runs, reviews, releases)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the project's slug")
        parser.add_argument("file", help="where to write, e.g. cardio.jsonl.gz")

    def handle(self, *args, slug: str, file: str, **options):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with slug {slug!r}")
        header = project_export(project=project, path=Path(file))
        rows = sum(header["counts"].values())
        self.stdout.write(f"Exported {slug}: {rows} rows, {header['users']} users → {file}")
        for label, count in header["counts"].items():
            self.stdout.write(f"  {label:32} {count}")
