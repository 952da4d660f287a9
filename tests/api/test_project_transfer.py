"""`project_export` / `project_load`: a whole project out to a file and into an empty
database, losslessly (export → flush → load → export gives the same bytes)."""

import gzip
import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from generation.models import Job, LLMProfile, Run
from generation.services import run_start
from medcot.imports.formats import ImportOptions
from medcot.imports.service import seed_file_import
from medcot.lifecycle import transition
from medcot.models import Event, ImportBatch, Item, ItemVersion, Project
from medcot.services import item_version_create
from review.models import Panel, PanelMembership, Profile
from review.services.panels import panel_assign
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rich_project(project, admin_user, reviewer, expert_a, expert_b):
    lines = [
        {
            "id": f"s{n}",
            "question": f"Seed {n}: 患者胸痛 — next step? <b>bold</b>",
            "options": {"A": "ECG", "B": "Home", "C": "CT", "D": "Wait", "E": "Echo"},
            "answer": "A",
            "specialty": "Cardiology",
        }
        for n in range(3)
    ]
    seed_file_import(
        project=project,
        data="\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode(),
        file_name="seeds.jsonl",
        options=ImportOptions(),
        actor=admin_user,
    )
    item = Item.objects.get(project=project, external_id="s0")
    item_version_create(
        item=item,
        author_kind="human",
        author=reviewer,
        reason="fixed",
        cot="Because ST.",
        marks_modified=True,
    )
    escalated = ItemFactory(project=project, status="reanswering")
    transition(escalated, "panel", reason="five strikes")
    panel_assign(item=escalated, experts=[expert_a, expert_b], actor=admin_user)
    with transaction.atomic():
        run_start(project=project, stage="cot", actor=admin_user)
        # The export is under test, not the dispatch. Some of these tests commit, so drop the
        # queued job messages before they leave the process for the ./var broker.
        connection.run_on_commit.clear()
    return project


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


# Committed rows: PostgreSQL cannot TRUNCATE (flush) inside a transaction with pending
# deferred foreign-key checks.
@pytest.mark.django_db(transaction=True)
def test_it_exports_and_loads_a_project_losslessly(rich_project, tmp_path):
    first = tmp_path / "first.jsonl.gz"
    second = tmp_path / "second.jsonl.gz"
    call_command("project_export", rich_project.slug, str(first))
    before = {
        "items": Item.objects.count(),
        "versions": ItemVersion.objects.count(),
        "events": Event.objects.count(),
        "batches": ImportBatch.objects.count(),
        "panels": Panel.objects.count(),
        "memberships": PanelMembership.objects.count(),
        "runs": Run.objects.count(),
        "jobs": Job.objects.count(),
    }
    assert before["runs"] == 1 and before["jobs"] >= 3 and before["panels"] == 1
    header = _lines(first)[0]
    assert header["counts"]["medcot.item"] == before["items"]
    assert header["counts"]["generation.llmprofile"] == 1

    call_command("flush", interactive=False, verbosity=0)
    assert not Project.objects.exists() and not get_user_model().objects.exists()

    call_command("project_load", str(first))
    after = {
        "items": Item.objects.count(),
        "versions": ItemVersion.objects.count(),
        "events": Event.objects.count(),
        "batches": ImportBatch.objects.count(),
        "panels": Panel.objects.count(),
        "memberships": PanelMembership.objects.count(),
        "runs": Run.objects.count(),
        "jobs": Job.objects.count(),
    }
    assert after == before
    assert LLMProfile.objects.count() == 1
    loaded = Item.objects.get(external_id="s0")
    assert loaded.current_version.cot == "Because ST."
    assert loaded.current_version.author.username == "reviewer"
    assert Profile.objects.filter(user__username="expert_a").exists()
    assert get_user_model().objects.get(username="expert_a").groups.filter(name="expert").exists()
    assert not get_user_model().objects.get(username="admin").has_usable_password()

    call_command("project_export", rich_project.slug, str(second))
    assert first.read_bytes() == second.read_bytes()


# Django's JSON encoder cut datetimes to milliseconds and dropped a zero fraction, so a row
# stamped in the first millisecond of a second (one in a thousand, by chance) made the two
# exports differ. Stamping rows there on purpose makes that case certain.
EDGE_STAMPS = [
    datetime(2025, 3, 1, 8, 0, 0, 0, tzinfo=UTC),
    datetime(2025, 3, 1, 8, 0, 0, 500, tzinfo=UTC),
    datetime(2025, 3, 1, 8, 0, 1, 999, tzinfo=UTC),
    datetime(2025, 3, 1, 8, 0, 2, 123456, tzinfo=UTC),
]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_timestamps_to_the_microsecond(rich_project, tmp_path):
    first = tmp_path / "first.jsonl.gz"
    second = tmp_path / "second.jsonl.gz"
    # Items, not events: history rows refuse updates (a trigger on PostgreSQL).
    items = list(Item.objects.filter(project=rich_project).order_by("pk"))
    assert len(items) == len(EDGE_STAMPS)
    for item, stamp in zip(items, EDGE_STAMPS, strict=True):
        Item.objects.filter(pk=item.pk).update(status_changed_at=stamp)
    # Several rows with one equal timestamp, too.
    jobs = Job.objects.filter(run__project=rich_project)
    assert jobs.update(dispatched_at=EDGE_STAMPS[1]) >= 3
    call_command("project_export", rich_project.slug, str(first))
    exported = {
        row["pk"]: row["fields"]["status_changed_at"]
        for row in _lines(first)
        if row.get("model") == "medcot.item"
    }
    assert [exported[item.pk] for item in items] == [
        "2025-03-01T08:00:00.000000+00:00",
        "2025-03-01T08:00:00.000500+00:00",
        "2025-03-01T08:00:01.000999+00:00",
        "2025-03-01T08:00:02.123456+00:00",
    ]

    call_command("flush", interactive=False, verbosity=0)
    call_command("project_load", str(first))
    loaded = dict(Item.objects.values_list("pk", "status_changed_at"))
    assert [loaded[item.pk] for item in items] == EDGE_STAMPS
    assert set(Job.objects.values_list("dispatched_at", flat=True)) == {EDGE_STAMPS[1]}

    call_command("project_export", rich_project.slug, str(second))
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.django_db(transaction=True)
def test_it_gives_new_rows_fresh_ids_after_a_load(rich_project, tmp_path, admin_user):
    path = tmp_path / "p.jsonl.gz"
    call_command("project_export", rich_project.slug, str(path))
    top = Event.objects.order_by("-pk").first().pk
    call_command("flush", interactive=False, verbosity=0)
    call_command("project_load", str(path))
    # On PostgreSQL the id sequences are moved past the loaded rows, so new rows do not clash.
    version = item_version_create(item=Item.objects.first(), author_kind="human", reason="x")
    assert Event.objects.order_by("-pk").first().pk > top
    assert version.pk > 0


def test_it_refuses_to_load_over_existing_rows(rich_project, tmp_path):
    path = tmp_path / "p.jsonl.gz"
    call_command("project_export", rich_project.slug, str(path))
    with pytest.raises(CommandError, match="already exists"):
        call_command("project_load", str(path))
    Project.objects.filter(pk=rich_project.pk).update(slug="renamed")
    with pytest.raises(CommandError, match="load into an empty database"):
        call_command("project_load", str(path))


def test_it_refuses_a_file_that_is_not_an_export(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(CommandError, match="not a MedCoT project export"):
        call_command("project_load", str(path))
    with pytest.raises(CommandError, match="No file"):
        call_command("project_load", str(tmp_path / "missing.gz"))


def test_it_names_an_unknown_project(tmp_path):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("project_export", "nope", str(tmp_path / "x.gz"))
