import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from medcot.lifecycle import (
    ALLOWED,
    INITIAL,
    TERMINAL,
    IllegalTransition,
    StaleStatus,
    Status,
    creation_event_values,
    transition,
    transition_ctes,
    transition_many,
)
from medcot.models import Event, Item
from tests.factories import ItemFactory

ALLOWED_PAIRS = [(src, dst) for src, targets in ALLOWED.items() for dst in sorted(targets)]
ILLEGAL_PAIRS = [(src, dst) for src in Status for dst in Status if dst not in ALLOWED[src]]


def test_it_gives_every_status_a_row_in_the_table():
    assert set(ALLOWED) == set(Status)


def test_it_lets_every_non_terminal_status_be_reached_from_an_initial_one():
    reached = set(INITIAL)
    frontier = list(INITIAL)
    while frontier:
        for target in ALLOWED[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Status)
    assert {Status.APPROVED, Status.DISCARDED} == TERMINAL


@pytest.mark.parametrize(("src", "dst"), ALLOWED_PAIRS)
def test_it_makes_every_allowed_move_and_records_it(db, admin_user, src, dst):
    item = ItemFactory(status=src)
    transition(item, dst, actor=admin_user, reason="because")
    item.refresh_from_db()
    assert item.status == dst
    event = Event.objects.get(item=item, kind="transition")
    assert (event.from_status, event.to_status, event.actor, event.reason) == (
        src,
        dst,
        admin_user,
        "because",
    )


@pytest.mark.parametrize(("src", "dst"), ILLEGAL_PAIRS)
def test_it_refuses_every_illegal_move_and_changes_nothing(db, src, dst):
    item = ItemFactory(status=src)
    with pytest.raises(IllegalTransition):
        transition(item, dst)
    item.refresh_from_db()
    assert item.status == src
    assert not Event.objects.filter(item=item).exists()


def test_it_refuses_a_move_from_a_status_the_item_has_already_left(db):
    item = ItemFactory(status=Status.FIRST_REVIEW)
    stale = Item.objects.get(pk=item.pk)
    transition(item, Status.REANSWERING)
    with pytest.raises(StaleStatus):
        transition(stale, Status.DISCARDED, reason="too late")
    item.refresh_from_db()
    assert item.status == Status.REANSWERING
    assert Event.objects.filter(item=item).count() == 1


def test_it_keeps_the_reason_for_an_error_on_the_item(db):
    item = ItemFactory(status=Status.GENERATING)
    transition(item, Status.ERROR, reason="HTTP 503 after 6 tries")
    item.refresh_from_db()
    assert item.status_reason == "HTTP 503 after 6 tries"
    transition(item, Status.GENERATING, reason="retry")
    item.refresh_from_db()
    assert item.status_reason == ""


def test_it_moves_many_items_at_once_and_skips_those_already_moved(db, project):
    items = [ItemFactory(project=project, status=Status.IMPORTED) for _ in range(5)]
    transition(items[0], Status.GENERATING)
    moved = transition_many([i.pk for i in items], Status.IMPORTED, Status.GENERATING)
    assert sorted(moved) == sorted(i.pk for i in items[1:])
    assert Item.objects.filter(status=Status.GENERATING).count() == 5
    assert Event.objects.filter(kind="transition").count() == 5
    assert transition_many([i.pk for i in items], Status.IMPORTED, Status.GENERATING) == []


def test_it_refuses_an_illegal_bulk_move(db, project):
    item = ItemFactory(project=project, status=Status.IMPORTED)
    with pytest.raises(IllegalTransition):
        transition_many([item.pk], Status.IMPORTED, Status.APPROVED)


EVENT_FIELDS = ("project_id", "actor_id", "kind", "from_status", "to_status", "reason", "data")


@pytest.mark.services
def test_the_one_statement_move_writes_what_transition_writes(db, project, admin_user):
    """PostgreSQL's hot path (`transition_ctes`, used in one statement with other writes)
    against `transition`: the same item fields, the same event, and nothing when stale."""
    from django.db import connection

    by_function = ItemFactory(project=project, status=Status.REANSWERING)
    by_statement = ItemFactory(project=project, status=Status.REANSWERING)
    transition(by_function, Status.ERROR, actor=admin_user, reason="timeout", data={"job": 7})
    moved = []
    for _ in range(2):  # the second time the item has moved on: nothing is written
        sql, params = transition_ctes(
            item_id=by_statement.pk,
            project_id=project.pk,
            from_status=Status.REANSWERING,
            to=Status.ERROR,
            actor_id=admin_user.pk,
            reason="timeout",
            data={"job": 7},
        )
        with connection.cursor() as cursor:
            cursor.execute(f"WITH {sql} SELECT count(*) FROM moved", params)  # noqa: S608
            moved.append(cursor.fetchone()[0])
    assert moved == [1, 0]
    for item in (by_function, by_statement):
        item.refresh_from_db()
    assert (by_statement.status, by_statement.status_reason) == (Status.ERROR, "timeout")
    assert by_statement.status_changed_at is not None
    events = [
        list(Event.objects.filter(item=item).values_list(*EVENT_FIELDS))
        for item in (by_function, by_statement)
    ]
    assert events[0] == events[1] and len(events[0]) == 1


class TestRandomWalks(TestCase):
    """Property: any sequence of requested moves leaves the item in a status reachable by the
    table, with exactly one event per accepted move and none for refused ones."""

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.sampled_from(list(Status)), max_size=12))
    def test_it_follows_only_the_table(self, targets):
        item = ItemFactory(status=Status.IMPORTED)
        current = Status.IMPORTED
        accepted = 0
        for target in targets:
            if target in ALLOWED[current]:
                transition(item, target)
                current = target
                accepted += 1
            else:
                with pytest.raises(IllegalTransition):
                    transition(item, target)
        item.refresh_from_db()
        assert item.status == current
        assert Event.objects.filter(item=item, kind="transition").count() == accepted


def test_it_builds_the_creation_event_for_a_first_status_only():
    event = creation_event_values(
        project_id=1, item_id=2, status=Status.GENERATED, reason="synthesized", data={"seed": 3}
    )
    assert (event["kind"], event["from_status"], event["to_status"]) == (
        "created",
        "",
        Status.GENERATED.value,
    )
    assert event["data"] == {"seed": 3} and event["created_at"] is not None
    for status in set(Status) - set(INITIAL):
        with pytest.raises(IllegalTransition):
            creation_event_values(project_id=1, item_id=2, status=status)
