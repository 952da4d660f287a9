from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medcot.transfer import TransferError, project_load


class Command(BaseCommand):
    help = "Load a project exported with project_export into this (empty) database."

    def add_arguments(self, parser):
        parser.add_argument("file", help="a file written by project_export")

    def handle(self, *args, file: str, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No file at {file}")
        try:
            header = project_load(path=path)
        except TransferError as exc:
            raise CommandError(str(exc)) from exc
        rows = sum(header["counts"].values())
        self.stdout.write(f"Loaded {header['project']}: {rows} rows, {header['users']} users")
        self.stdout.write("Loaded users have no password; set one with `manage.py changepassword`.")
