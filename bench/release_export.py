"""Release export at the paper's scale (and at a million items), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/medcot_release \\
        .venv/bin/python bench/release_export.py            # 36,210 items
    ... bench/release_export.py --million                     # 1,000,000 items

Creates a project of N approved items (1 in 16 escalated to a two-expert panel with rubric
scores, as the paper's 6.4 %), each with a content version, a first-pass review, re-answer
attempts and two agreeing consensus votes, plus N/100 discarded items that must stay out. The
rows are written with INSERT … SELECT from generate_series, so seeding a million items takes
seconds. Then a separate process builds a release through the same service the Celery task
calls, and reports the build time and that process's peak RSS (its whole life: Python,
Django and the build). Targets: 36,210 items < 10 s; 1,000,000 items < 5 min, peak RSS
< 500 MB.

Release files go under --media (default /tmp/medcot_release_bench), removed afterwards unless
--keep. The bench's project stays in the database; --reset empties the database first (it
must be one whose name contains "bench" or "release", so a real database is never wiped).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")

DIMENSIONS = (
    "medical_correctness",
    "reasoning_structure",
    "information_sufficiency",
    "terminology_clarity",
    "clinical_utility",
)
SPECIALTIES = (
    "Cardiology",
    "Neurology",
    "Respiratory medicine",
    "Gastroenterology",
    "Endocrinology",
    "Nephrology",
    "Haematology",
    "Infectious diseases",
    "Obstetrics",
    "Paediatrics",
    "心内科",
    "神经内科",
)


def ensure_database(url: str, *, reset: bool) -> None:
    import psycopg
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    if reset:
        if "bench" not in name and "release" not in name:
            sys.exit(f"Refusing to reset {name!r}: use a database named for the bench.")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")


def insert_select(model, exprs: dict[str, str], source: str, params: list | None = None) -> int:
    """INSERT INTO <model's table> (...) SELECT <exprs> <source>. Every non-null column the
    caller does not give gets the model field's default, so the bench keeps working when a
    model gains a column with a default; a required column without one is an error."""
    from django.db import connection

    columns, selects, default_params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.attname in exprs:
            columns.append(field.column)
            selects.append(exprs[field.attname])
            continue
        if field.null:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            columns.append(field.column)
            selects.append("now()")
            continue
        default = field.get_default()
        if default is None:
            raise SystemExit(f"{model.__name__}.{field.name} needs a value in the bench")
        columns.append(field.column)
        selects.append("%s")
        default_params.append(field.get_db_prep_save(default, connection))
    unknown = set(exprs) - {f.attname for f in model._meta.concrete_fields}
    if unknown:
        raise SystemExit(f"{model.__name__} has no field(s) {sorted(unknown)}")
    # The SQL uses % as modulo; only %s is a placeholder.
    selects = [s if s == "%s" else re.sub(r"%(?!s)", "%%", s) for s in selects]
    source = re.sub(r"%(?!s)", "%%", source)
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*default_params, *(params or [])])
        return cursor.rowcount


def seed(n: int) -> tuple[int, dict]:
    """Create the project and its rows; returns the project id and row counts."""
    from django.db import connection, transaction

    from generation.models import ReanswerAttempt
    from medcot.models import Event, Item, ItemVersion
    from medcot.roles import ADMIN, EXPERT, REVIEWER
    from medcot.services import project_create
    from review.models import (
        ConsensusVote,
        FirstPassReview,
        Panel,
        PanelDecision,
        RubricScore,
    )
    from review.services import person_create

    stamp = time.time_ns()
    project = project_create(name=f"release-bench-{stamp}")
    people = {
        role: person_create(
            username=f"bench-{role}-{stamp}",
            password=None,
            roles=[role],
            display_name=f"Bench {role}",
            specialties=[],
        )
        for role in (REVIEWER, ADMIN)
    }
    experts = [
        person_create(
            username=f"bench-expert{i}-{stamp}",
            password=None,
            roles=[EXPERT],
            display_name=f"Bench expert {i}",
            specialties=[],
        )
        for i in range(2)
    ]
    p = int(project.pk)
    specialties = "ARRAY[" + ", ".join(f"'{s}'" for s in SPECIALTIES) + "]"
    discarded = max(1, n // 100)
    counts = {}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if cursor.fetchone()[0]:
                # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: at a million items
                # the COMMIT alone would spend minutes re-checking every generated row. The
                # rows are consistent by construction, so a superuser may skip the checks for
                # this one seeding transaction; the build itself runs with every check on.
                cursor.execute("SET LOCAL session_replication_role = replica")
        counts["items"] = insert_select(
            Item,
            {
                "project_id": str(p),
                "kind": "CASE WHEN g % 10 = 1 THEN 'seed' ELSE 'synthetic' END",
                "external_id": "'bench-' || g",
                "question_type": "CASE WHEN g % 5 = 0 THEN 'S' ELSE 'K' END",
                "specialty": f"({specialties})[1 + g % {len(SPECIALTIES)}]",
                "cognitive_level": "(ARRAY['recall', 'interpretation', 'problem_solving'])"
                "[1 + g % 3]",
                "difficulty": "(ARRAY['easy', 'moderate', 'hard'])[1 + (g / 3) % 3]",
                "language": "CASE WHEN g % 4 = 0 THEN 'en' ELSE 'zh' END",
                "source": "g::text",
                "status": f"CASE WHEN g > {n} THEN 'discarded' ELSE 'approved' END",
                "revision_status": "CASE WHEN g % 6 = 0 THEN 'modified' ELSE 'unrevised' END",
            },
            "FROM generate_series(1, %s) AS g ORDER BY g",
            [n + discarded],
        )
        with connection.cursor() as cursor:
            # Fresh rows have no statistics; without them the planner picks nested loops.
            cursor.execute("ANALYZE medcot_item")
            cursor.execute(
                "UPDATE medcot_item i SET family_id = s.id FROM medcot_item s "
                "WHERE i.project_id = %s AND s.project_id = %s "
                "AND s.external_id = 'bench-' || (((i.source::int - 1) / 10) * 10 + 1)",
                [p, p],
            )
        counts["versions"] = insert_select(
            ItemVersion,
            {
                "item_id": "i.id",
                "number": "1",
                "stem": "'A ' || (20 + g % 60) || '-year-old patient (case ' || g || ') has '"
                " || repeat('crushing chest pain radiating to the left arm with sweating, ', 5)"
                " || 'What is the most appropriate next step?'",
                "option_a": "'Aspirin, nitrates and a 12-lead ECG within ten minutes'",
                "option_b": "'Discharge with outpatient stress testing ' || g",
                "option_c": "'Abdominal ultrasound'",
                "option_d": "'Proton pump inhibitor trial'",
                "option_e": "CASE WHEN g % 2 = 0 THEN 'Chest CT angiography' ELSE '' END",
                "answer": "(ARRAY['A', 'B', 'C', 'D'])[1 + g % 4]",
                "cot": "repeat('The presentation suggests an acute coronary syndrome; option A "
                "starts guideline therapy while B delays care, C and D treat the wrong organ. ',"
                " 12) || 'Item ' || g || '.'",
                "author_kind": "'llm'",
            },
            "FROM (SELECT id, source::int AS g FROM medcot_item WHERE project_id = %s) i",
            [p],
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE medcot_itemversion")
            cursor.execute(
                "UPDATE medcot_item i SET current_version_id = v.id FROM medcot_itemversion v "
                "WHERE v.item_id = i.id AND i.project_id = %s",
                [p],
            )
        approved = (
            "FROM (SELECT i.id, i.current_version_id AS version_id, i.source::int AS g, "
            "v.answer FROM medcot_item i JOIN medcot_itemversion v "
            "ON v.id = i.current_version_id WHERE i.project_id = %s AND i.status = 'approved'{}) i"
        )
        items = approved.format("")
        counts["first_pass"] = insert_select(
            FirstPassReview,
            {
                "item_id": "i.id",
                "version_id": "i.version_id",
                "reviewer_id": str(people[REVIEWER].pk),
                "relevance": "true",
                "correctness": "true",
                "sufficiency": "true",
                "outcome": "'pass'",
                "seconds_on_item": "30 + i.g % 90",
                "state": "'applied'",
                "effective_at": "now()",
                "applied_at": "now()",
            },
            items,
            [p],
        )
        counts["consensus_votes"] = 0
        for expert in experts:
            counts["consensus_votes"] += insert_select(
                ConsensusVote,
                {
                    "item_id": "i.id",
                    "version_id": "i.version_id",
                    "expert_id": str(expert.pk),
                    "answer": "i.answer",
                    "approve_phrasing": "true",
                },
                items,
                [p],
            )
        escalated = approved.format(" AND i.source::int % 16 = 0")
        counts["attempts"] = insert_select(
            ReanswerAttempt,
            {
                "item_id": "i.id",
                "number": "a",
                "variant": "'default'",
                "model": "'bench-model'",
                "option_order": "'ABCDE'",
                "raw_answer": "CASE WHEN i.g % 16 = 0 THEN 'E' ELSE i.answer END",
                "answer": "CASE WHEN i.g % 16 = 0 THEN 'E' ELSE i.answer END",
                "parsed": "true",
                "correct": "i.g % 16 <> 0",
            },
            items + " CROSS JOIN LATERAL generate_series(1, CASE WHEN i.g % 16 = 0 "
            "THEN 5 ELSE 1 + i.g % 2 END) AS a WHERE i.g % 16 = 0 OR a = 1 + i.g % 2",
            [p],
        )
        counts["panel_events"] = insert_select(
            Event,
            {
                "project_id": str(p),
                "item_id": "i.id",
                "kind": "'status'",
                "from_status": "'reanswering'",
                "to_status": "'panel'",
            },
            escalated,
            [p],
        )
        counts["panels"] = insert_select(
            Panel,
            {"item_id": "i.id", "round_version_id": "i.version_id", "state": "'closed'"},
            escalated,
            [p],
        )
        counts["rubric_scores"] = 0
        for k, expert in enumerate(experts):
            counts["rubric_scores"] += insert_select(
                RubricScore,
                {
                    "item_id": "i.id",
                    "version_id": "i.version_id",
                    "expert_id": str(expert.pk),
                    "round": "1",
                    "dimension": "d.name",
                    "score": f"LEAST(2, 1 + (i.g / 16 + d.n + {k}) % 3)",
                },
                escalated  # noqa: S608 - constants of this file, no outside input
                + " CROSS JOIN (SELECT name, n FROM unnest(ARRAY["
                + ", ".join(f"'{d}'" for d in DIMENSIONS)
                + "]) WITH ORDINALITY AS t(name, n)) d",
                [p],
            )
            counts.setdefault("panel_decisions", 0)
            counts["panel_decisions"] += insert_select(
                PanelDecision,
                {
                    "panel_id": "pn.id",
                    "item_id": "i.id",
                    "version_id": "i.version_id",
                    "expert_id": str(expert.pk),
                    "round": "1",
                    "decision": "'accept'",
                    "answer": "i.answer",
                    "seconds_on_item": "60 + i.g % 240",
                },
                escalated + " JOIN review_panel pn ON pn.item_id = i.id",
                [p],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return p, counts


def build_in_child(release_id: int, media: Path) -> dict:
    """Build in a fresh process so its peak RSS is the build's, not the seeding's."""
    env = dict(os.environ, MEDIA_ROOT=str(media))
    out = subprocess.run(
        [sys.executable, __file__, "--build-release", str(release_id)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed(module, name: str, phases: dict) -> None:
    """Wrap module.name so the bench can say where the time goes."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 2)

    setattr(module, name, wrapper)


def build(release_id: int) -> None:
    import django

    django.setup()
    from review.releases import services
    from review.reports import selectors as report_selectors

    phases: dict[str, float] = {}
    for name in ("release_freeze", "release_snapshot_stats", "write_checksums", "write_zip"):
        _timed(services, name, phases)
    for name in ("project_funnel", "project_agreement"):
        _timed(report_selectors, name, phases)

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    release = services.release_build(release_id=release_id)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_kb = after.ru_maxrss
    print(
        json.dumps(
            {
                "state": release.state,
                "error": release.error,
                "items": release.item_count,
                "excluded_without_consensus": release.excluded_without_consensus,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "phases": phases,
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "files": {k: v["bytes"] for k, v in release.files.items()},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=36_210)
    parser.add_argument("--million", action="store_true", help="1,000,000 items")
    parser.add_argument("--media", type=Path, default=Path("/tmp/medcot_release_bench"))
    parser.add_argument("--keep", action="store_true", help="keep the release files")
    parser.add_argument("--reset", action="store_true", help="empty the bench database first")
    parser.add_argument("--build-release", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_release:
        build(args.build_release)
        return
    n = 1_000_000 if args.million else args.items
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the bench creates it if missing).")
    os.environ["MEDIA_ROOT"] = str(args.media)

    import django

    django.setup()
    ensure_database(url, reset=args.reset)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from medcot.models import Project
    from review.releases.models import Release
    from review.releases.services import release_create

    started = time.perf_counter()
    project_id, counts = seed(n)
    seeded = time.perf_counter() - started
    print(f"seeded {n:,} approved items in {seeded:.1f} s: " + json.dumps(counts))

    project = Project.objects.get(pk=project_id)
    release = release_create(project=project, version="v1", actor=None, dispatch=False)
    result = build_in_child(release.pk, args.media)
    if result["state"] != Release.State.BUILT:
        sys.exit(f"build failed: {result['error']}")
    if result["items"] != n:
        sys.exit(f"expected {n} items in the release, got {result['items']}")
    total = sum(result["files"].values())
    target = (10.0, None) if n <= 36_210 else (300.0, 500.0)
    print(
        f"release of {result['items']:,} items built in {result['seconds']:.2f} s "
        f"({result['items'] / result['seconds']:,.0f} items/s), peak RSS "
        f"{result['peak_rss_mb']:.0f} MB; {total / 1e6:,.0f} MB of files"
    )
    print(
        f"  build process CPU {result['cpu_seconds']:.2f} s (user + system; the machine's "
        f"load average was {os.getloadavg()[0]:.1f}); phases (s): {json.dumps(result['phases'])}"
    )
    for name, size in sorted(result["files"].items()):
        print(f"  {name:40s} {size:>15,} bytes")
    verdict = result["seconds"] < target[0] and (
        target[1] is None or result["peak_rss_mb"] < target[1]
    )
    limits = f"< {target[0]:.0f} s" + (f", < {target[1]:.0f} MB" if target[1] else "")
    print(f"target {limits}: {'met' if verdict else 'MISSED'}")
    if not args.keep:
        shutil.rmtree(args.media / "releases" / project.slug, ignore_errors=True)


if __name__ == "__main__":
    main()
