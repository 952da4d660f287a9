"""Seed import at the paper's scale: 36,210 items into PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/medcot_bench \
        .venv/bin/python bench/seed_import.py

Builds a MedQA-style JSONL file of N distinct questions (real MedQA and CMMLU stems, varied so
every record is unique), imports it into a fresh project through the same service the command and
the upload page use, then imports it again (which must change nothing). Prints times and the
ratio to Label Studio's 10 s for the same number of tasks on this kind of machine.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medcot.settings")
LABEL_STUDIO_IMPORT_S = 10.0


def ensure_database(url: str) -> None:
    import psycopg
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def build_file(n: int, data_dir: Path) -> bytes:
    stems = []
    for line in (data_dir / "medqa_usmle" / "medqa_test.jsonl").read_text().splitlines():
        record = json.loads(line)
        stems.append((record["question"], record["options"], record["answer_idx"]))
    lines = []
    for i in range(n):
        stem, options, key = stems[i % len(stems)]
        lines.append(
            json.dumps(
                {
                    "question": f"[{i}] {stem}",
                    "options": options,
                    "answer_idx": key,
                    "meta_info": "step1",
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=36_210)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the bench creates it if missing).")

    import django

    django.setup()
    ensure_database(url)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from medcot.imports.formats import ImportOptions
    from medcot.imports.service import seed_file_import
    from medcot.services import project_create

    data = build_file(args.items, settings.MEDCOT_DEMO_DATA_DIR)
    project = project_create(name=f"bench-{time.time_ns()}")
    options = ImportOptions(format="auto", file_name="bench.jsonl")

    started = time.perf_counter()
    first = seed_file_import(project=project, data=data, file_name="bench.jsonl", options=options)
    first_s = time.perf_counter() - started
    assert first.ok, first.errors[:3]

    started = time.perf_counter()
    again = seed_file_import(project=project, data=data, file_name="bench.jsonl", options=options)
    again_s = time.perf_counter() - started
    assert again.ok and again.batch.created_count == 0

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file: {args.items:,} items, {len(data) / 1e6:.1f} MB (MedQA-style JSONL)")
    print(f"import:    {first_s:6.2f} s  ({args.items / first_s:,.0f} items/s)")
    print(f"re-import: {again_s:6.2f} s  (no-op: {again.batch.unchanged_count:,} unchanged)")
    print(f"peak RSS:  {peak_mb:6.0f} MB")
    ratio = LABEL_STUDIO_IMPORT_S / first_s
    print(f"vs Label Studio's {LABEL_STUDIO_IMPORT_S:.0f} s: {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
