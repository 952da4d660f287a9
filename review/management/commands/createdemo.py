"""Make (or refresh) the demo: a project of real English and Chinese exam questions and one
login per role. Safe to run again: nothing is duplicated, and the logins are printed each time."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from medcot.imports.formats import ImportOptions
from medcot.imports.service import seed_file_import
from medcot.models import Project, ProjectLanguage
from medcot.roles import ADMIN, EXPERT, REVIEWER
from medcot.services import project_create
from review.services import person_create

DEMO_SLUG = "demo"
BUNDLED_DATA = Path(__file__).resolve().parents[2] / "demo_data"
DEMO_PASSWORD = "medcot-demo"  # noqa: S105 — printed on purpose: demo logins for localhost

DEMO_PEOPLE = [
    ("admin", [ADMIN], "Dr. Lin", []),
    ("reviewer", [REVIEWER], "Dr. Patel", []),
    ("reviewer2", [REVIEWER], "Dr. Okafor", []),
    ("reviewer3", [REVIEWER], "Dr. Haddad", []),
    ("expert1", [EXPERT], "Prof. Zhang", ["Clinical knowledge", "Professional medicine"]),
    ("expert2", [EXPERT], "Dr. García", ["Clinical knowledge", "Anatomy"]),
    ("expert3", [EXPERT], "Dr. Chen", ["Professional medicine", "Virology"]),
]

# A few hundred questions keep the demo quick to explore; the whole sets import in seconds too
# (pass --full).
DEMO_FILES = [
    ("medqa_usmle/medqa_test.jsonl", "medqa-jsonl", 120),
    ("cmmlu_medical/test_clinical_knowledge.csv", "cmmlu-csv", 60),
    ("cmmlu_medical/test_professional_medicine.csv", "cmmlu-csv", 60),
    ("cmmlu_medical/test_anatomy.csv", "cmmlu-csv", 30),
    ("cmmlu_medical/test_virology.csv", "cmmlu-csv", 30),
]


class Command(BaseCommand):
    help = "Create the demo project (English and Chinese seed questions) and demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="import the whole files")
        parser.add_argument("--data-dir", type=Path, default=None)

    def handle(self, *args, **opts):
        data_dir: Path = opts["data_dir"] or settings.MEDCOT_DEMO_DATA_DIR
        if opts["data_dir"] is None and not data_dir.is_dir():
            # Not beside the shared data folder: use the small sample shipped with the code.
            data_dir = BUNDLED_DATA
        User = get_user_model()
        for username, roles, name, specialties in DEMO_PEOPLE:
            if not User.objects.filter(username=username).exists():
                person_create(
                    username=username,
                    password=DEMO_PASSWORD,
                    roles=roles,
                    display_name=name,
                    specialties=specialties,
                )
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is None:
            project = project_create(
                name="Demo: MedQA (English) + CMMLU (Chinese)",
                slug=DEMO_SLUG,
                language=ProjectLanguage.MIXED,
                description=(
                    "Real exam questions: MedQA USMLE test split (MIT, Jin et al. 2021) and "
                    "CMMLU medical subjects (CC BY-NC-SA 4.0, Li et al. 2023)."
                ),
            )
        if not data_dir.is_dir():
            self.stderr.write(
                self.style.WARNING(
                    f"Demo data folder {data_dir} not found; set MEDCOT_DEMO_DATA_DIR to the "
                    "shared/data folder to import the demo questions."
                )
            )
        else:
            self._files_import(project, data_dir=data_dir, full=opts["full"])
            controls = _seed_controls(project)
            if controls:
                self.stdout.write(f"Seeded {controls} control items (review/quality).")
        count = project.items.filter(control__isnull=True).count()
        self.stdout.write(self.style.SUCCESS(f"Demo project '{project.name}': {count} items"))
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, roles, name, _specialties in DEMO_PEOPLE:
            self.stdout.write(f"  {username:<10} {', '.join(roles):<9} {name}")

    def _files_import(self, project, *, data_dir: Path, full: bool) -> None:
        """Import each demo file found (its first records unless `full`), reporting the
        missing ones and the first errors of each."""
        for relative, fmt, limit in DEMO_FILES:
            path = data_dir / relative
            if not path.exists():
                self.stderr.write(self.style.WARNING(f"missing {path}, skipped"))
                continue
            data = path.read_bytes()
            if not full:
                data = _first_records(data, limit, header=fmt.endswith("csv"))
            result = seed_file_import(
                project=project,
                data=data,
                file_name=path.name,
                options=ImportOptions(
                    format=fmt,
                    file_name=path.name,
                    # MedQA is MIT (Jin et al. 2021); CMMLU is CC BY-NC-SA 4.0 (Li et al.).
                    license="mit" if fmt.startswith("medqa") else "cc-by-nc-sa-4.0",
                ),
            )
            if not result.ok:
                self.stderr.write(self.style.ERROR(f"{path.name}: {result.errors[:3]}"))


def _first_records(data: bytes, limit: int, *, header: bool) -> bytes:
    """The first `limit` records (the whole file when shorter). CMMLU rows never span lines."""
    lines = data.split(b"\n")
    keep = lines[: limit + (1 if header else 0)]
    return b"\n".join(keep) + b"\n"


# Control items (review/quality): twelve MedQA questions after the ones the demo imports
# (demo_data/controls, bundled so the demo has them without the shared data), so no control
# repeats a queue item. Half keep their key (they should pass), half get a wrong key with a
# chain of thought that argues for it (they should fail). One queue item in five is a control
# in the demo, so a short session already shows figures on the reliability page.
DEMO_CONTROL_EVERY = 5


def _seed_controls(project) -> int:
    from dataclasses import replace

    from medcot.imports.formats import ImportOptions, parse_seed_file
    from review.quality.controls import control_create_from_record
    from review.quality.models import ControlItem

    if ControlItem.objects.filter(project=project).exists():
        return 0
    path = BUNDLED_DATA / "controls" / "medqa_controls.jsonl"
    parsed = parse_seed_file(
        path.read_bytes(), ImportOptions(format="medqa-jsonl", file_name=path.name)
    )
    admin = get_user_model().objects.filter(username="admin").first()
    made = 0
    for n, record in enumerate(parsed.records):
        valid = n % 2 == 0
        key = record.answer
        if not valid:
            key = next(label for label in record.options if label != record.answer)
        cot = (
            "Weigh each option against the findings in the vignette. "
            + " ".join(
                f"({label}) {'fits the findings best' if label == key else 'fits them less well'}."
                for label in record.options
            )
            + f" The answer is ({key})."
        )
        control_create_from_record(
            admin=admin,
            project=project,
            record=replace(record, answer=key, cot=cot),
            stage="first_review",
            expected_valid=valid,
        )
        made += 1
    Project.objects.filter(pk=project.pk).update(control_every=DEMO_CONTROL_EVERY)
    return made
