"""Bad input never crashes and never hangs: every batch ends done, rejected or failed, with a
clear message, a capped report, and bounded time and memory."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from medcot.imports.formats import ERROR_LIMIT, ImportOptions
from medcot.imports.service import import_batch_create, import_batch_process, seed_file_import
from medcot.models import ImportBatch, Project

ROOT = Path(__file__).resolve().parents[2]


def run(project, data: bytes, name: str = "junk.txt", **options):
    return seed_file_import(
        project=project, data=data, file_name=name, options=ImportOptions(file_name=name, **options)
    )


def random_text(size: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    alphabet = bytes(range(32, 127)) + b'\n\n\r\t,"'
    block = bytes(rng.choice(alphabet) for _ in range(1 << 20))
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["auto", "medcot-jsonl", "json", "medcot-csv", "cmmlu-csv"])
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(random.Random(1).randbytes(200_000), id="binary"),
        pytest.param(b"PK\x03\x04" + b"x" * 1000, id="zip"),
        pytest.param("question,A\n".encode("utf-16"), id="utf16"),
        pytest.param(random_text(300_000), id="random-text"),
        pytest.param(b"{" + random_text(300_000), id="random-json"),
        pytest.param(b"question,A,B,C,D,answer\n" + random_text(300_000), id="header-then-junk"),
        pytest.param(b"\r\r\r", id="only-cr"),
    ],
)
def test_junk_fails_fast_with_one_clear_message(project, data, fmt):
    started = time.perf_counter()
    result = run(project, data, format=fmt)
    assert time.perf_counter() - started < 5
    assert result.batch.state in {ImportBatch.State.FAILED, ImportBatch.State.REJECTED}
    assert result.batch.is_finished
    assert 1 <= len(result.batch.errors) <= ERROR_LIMIT
    message = result.batch.errors[0]["message"]
    assert "Traceback" not in message and len(message) < 400
    assert project.items.count() == 0


@pytest.mark.django_db
def test_a_stray_carriage_return_is_named_on_its_line(project):
    data = b"id,question,A,B,C,D,answer\nq1,Fine?,a,b,c,d,A\nq2,Bro\rken?,a,b,c,d,A\n"
    result = run(project, data, "cr.csv")
    assert result.batch.state == ImportBatch.State.REJECTED
    assert result.errors[0].line == 3
    assert "carriage return" in result.errors[0].message
    # Line ends of an old Mac (CR only) are line ends, not junk.
    mac = data.replace(b"Bro\rken", b"Broken").replace(b"\n", b"\r")
    assert run(project, mac, "mac.csv").ok


@pytest.mark.django_db
def test_the_report_is_capped_in_memory_and_in_the_database(project):
    good = {"question": "Q?", "options": ["a", "b", "c", "d"], "answer": "A"}
    lines = [json.dumps(good | {"id": f"g{n}"}) for n in range(5)]
    lines += [json.dumps(good | {"id": f"b{n}", "answer": "Z"}) for n in range(2500)]
    result = run(project, "\n".join(lines).encode(), "many.jsonl")
    assert result.batch.state == ImportBatch.State.REJECTED
    assert result.batch.error_count == 2500
    assert len(result.errors) == len(result.batch.errors) == ERROR_LIMIT
    assert result.batch.errors[0]["line"] == 6
    stored = ImportBatch.objects.get(pk=result.batch.pk)
    assert len(stored.errors) == ERROR_LIMIT and stored.error_count == 2500


@pytest.mark.django_db
def test_a_worker_crash_in_the_middle_leaves_the_batch_failed_not_running(project, monkeypatch):
    from medcot.imports import service

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "_write", explode)
    data = json.dumps({"question": "Q?", "options": ["a", "b", "c", "d"], "answer": "A"}).encode()
    batch = import_batch_create(
        project=project, data=data, file_name="x.jsonl", options=ImportOptions()
    )
    batch = import_batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.state == ImportBatch.State.FAILED
    assert "internal error" in batch.errors[0]["message"]
    assert "disk on fire" not in batch.errors[0]["message"]
    assert batch.content is None


@pytest.mark.django_db
def test_create_leaves_no_empty_project_when_the_import_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01" * 100)
    with pytest.raises(CommandError, match="1 file"):
        call_command("import_seeds", str(bad), "--project", "fresh", "--create")
    assert not Project.objects.filter(slug="fresh").exists()
    err = capsys.readouterr().err
    assert "binary file" in err
    assert "Traceback" not in err


@pytest.mark.services  # the child process reads the test database, so it must be a server
@pytest.mark.django_db(transaction=True)
def test_fifty_megabytes_of_junk_fail_within_seconds_under_300_mb(tmp_path):
    project = Project.objects.create(name="Junk", slug="junk")
    path = tmp_path / "junk.jsonl"
    # A valid record first, so the reader cannot tell at once: then 50 MB of random text.
    first = json.dumps({"question": "Q?", "options": ["a", "b", "c", "d"], "answer": "A"})
    path.write_bytes(first.encode() + b"\n" + random_text(50 * 1024 * 1024))
    script = (
        "import json, sys, time, django; django.setup()\n"
        "from medcot.imports.formats import ImportOptions\n"
        "from medcot.imports.service import seed_file_import\n"
        "from medcot.models import Project\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "t = time.perf_counter()\n"
        "r = seed_file_import(project=Project.objects.get(slug='junk'), data=data,\n"
        "    file_name='junk.jsonl', options=ImportOptions(file_name='junk.jsonl'))\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) at exec.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(json.dumps({'state': r.batch.state, 'seconds': time.perf_counter() - t,\n"
        "    'errors': len(r.batch.errors), 'peak_mb': int(hwm.split()[1]) / 1024}))\n"
    )
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "medcot.settings",
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
        f"{settings['NAME']}",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print("50 MB junk:", report)
    assert report["state"] == "failed"
    assert report["seconds"] < 5
    assert report["peak_mb"] < 300, report
    batch = ImportBatch.objects.get(project=project)
    assert batch.state == ImportBatch.State.FAILED
    assert "not readable records" in batch.errors[0]["message"]
    assert not ImportBatch.objects.filter(state__in=["pending", "running"]).exists()
