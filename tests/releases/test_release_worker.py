"""On PostgreSQL and Redis: a real Celery worker builds a release, and a redelivered task
changes nothing."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from review.releases.models import Release, ReleaseItem
from review.releases.services import release_create, release_directory, release_write_files
from tests.conftest import redis_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(transactional_db, tmp_path):
    import redis

    redis.Redis.from_url(redis_url()).flushdb()
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
        CELERY_BROKER_URL=redis_url(),
        MEDCOT_VAR_DIR=str(tmp_path),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "medcot",
            "worker",
            "--queues",
            "default",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_built(release, worker):
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        release.refresh_from_db()
        if release.is_finished:
            return release
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.2)
    raise AssertionError("the worker did not finish the build in time")


@pytest.mark.services
def test_a_real_worker_builds_a_release_on_postgres(
    worker, project, admin_user, make_item, tmp_path
):
    items = [make_item(specialty=s) for s in ("Cardiology", "Neurology", "心内科")]
    make_item(agreeing=1)
    release = release_create(project=project, version="v1", actor=admin_user, dispatch=False)
    sender = Celery(broker=redis_url(), set_as_current=False)
    sender.send_task("releases.build_release", args=[release.pk], queue="default")
    release = _wait_built(release, worker)
    assert release.state == Release.State.BUILT, release.error
    assert release.item_count == 3
    assert release.excluded_without_consensus == 1
    assert sorted(
        ReleaseItem.objects.filter(release=release).values_list("item_id", flat=True)
    ) == sorted(i.pk for i in items)

    # The same frozen set written again in this process, on PostgreSQL, gives the same bytes.
    again = release_write_files(release=release, directory=tmp_path / "again", chunk_size=2)
    assert again["files"] == release.files
    assert (release_directory(release) / "data.parquet").read_bytes() == (
        tmp_path / "again" / "data.parquet"
    ).read_bytes()

    # Delivered again (as after a crash before the ack), the task changes nothing.
    built_at = release.built_at
    sender.send_task("releases.build_release", args=[release.pk], queue="default")
    time.sleep(1.5)
    release.refresh_from_db()
    assert release.built_at == built_at
    assert ReleaseItem.objects.filter(release=release).count() == 3
