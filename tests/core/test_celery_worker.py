"""A real Celery worker process on Redis and PostgreSQL sees a task through."""

import json
import time
from pathlib import Path

import pytest
from celery import Celery

from medcot.imports.formats import ImportOptions
from medcot.imports.service import import_batch_create
from medcot.models import ImportBatch, Item
from tests.conftest import redis_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.services
def test_it_imports_an_upload_in_a_real_worker_process(worker, project):
    record = {
        "id": "w1",
        "question": "Which nerve is injured in wrist drop?",
        "options": {"A": "Median", "B": "Radial", "C": "Ulnar", "D": "Axillary"},
        "answer": "B",
    }
    batch = import_batch_create(
        project=project,
        data=(json.dumps(record) + "\n").encode(),
        file_name="w.jsonl",
        options=ImportOptions(),
    )
    sender = Celery(broker=redis_url(), set_as_current=False)
    sender.send_task("medcot.tasks.import_seed_batch", args=[batch.pk], queue="default")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if batch.is_finished:
            break
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.2)
    assert batch.state == ImportBatch.State.DONE, batch.errors
    assert Item.objects.get(project=project).external_id == "w1"

    # Delivered again (as after a crash before the ack), the task changes nothing.
    sender.send_task("medcot.tasks.import_seed_batch", args=[batch.pk], queue="default")
    time.sleep(1.5)
    assert Item.objects.filter(project=project).count() == 1
