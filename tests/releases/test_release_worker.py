"""On PostgreSQL and Redis: a real Celery worker builds a release, and a redelivered task
changes nothing."""

import time
from pathlib import Path

import pytest
from celery import Celery

from review.releases.models import Release, ReleaseItem
from review.releases.services import release_create, release_directory, release_write_files
from tests.conftest import redis_url

ROOT = Path(__file__).resolve().parents[2]


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
