"""The audit log and content versions cannot be changed or deleted: not through the ORM, not
through the admin site, and on PostgreSQL not even through raw SQL."""

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from medcot.models import AppendOnlyError, Event, ItemVersion
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(project, admin_user):
    from medcot.lifecycle import transition

    item = ItemFactory(project=project, status="imported")
    transition(item, "generating", actor=admin_user)
    return item, Event.objects.get(item=item), ItemVersion.objects.get(item=item)


@pytest.mark.parametrize("model", [Event, ItemVersion])
def test_it_refuses_orm_updates_and_deletes(history, model):
    row = model.objects.first()
    row.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        model.objects.filter(pk=row.pk).update(reason="rewritten")
    with pytest.raises(AppendOnlyError):
        model.objects.filter(pk=row.pk).delete()
    row.refresh_from_db()
    assert row.reason != "rewritten"


@pytest.mark.parametrize("model_name", ["event", "itemversion"])
def test_it_keeps_history_read_only_in_the_admin_site(
    client, django_user_model, history, model_name
):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.org", "pw-123-long")
    client.force_login(boss)
    _, event, version = history
    pk = event.pk if model_name == "event" else version.pk
    base = f"/django-admin/medcot/{model_name}/"
    assert client.get(base).status_code == 200
    assert client.get(f"{base}{pk}/change/").status_code == 200  # a view-only page
    assert client.post(f"{base}{pk}/change/", {"reason": "x"}).status_code == 403
    assert client.get(f"{base}add/").status_code == 403
    assert client.post(f"{base}{pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = client.post(base, {"action": "delete_selected", "_selected_action": [pk]})
    assert bulk.status_code in {200, 302}
    assert Event.objects.filter(pk=event.pk).exists()
    assert ItemVersion.objects.filter(pk=version.pk).exists()


@pytest.mark.services
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE medcot_event SET reason = 'rewritten' WHERE id = %s",
        "DELETE FROM medcot_event WHERE id = %s",
        "UPDATE medcot_itemversion SET stem = 'rewritten' WHERE id = %s",
        "DELETE FROM medcot_itemversion WHERE id = %s",
    ],
)
def test_it_refuses_raw_sql_changes_on_postgresql(history, sql):
    _, event, version = history
    pk = event.pk if "medcot_event" in sql else version.pk
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [pk])
    assert Event.objects.filter(pk=event.pk, reason=event.reason).exists()
    assert ItemVersion.objects.filter(pk=version.pk, stem=version.stem).exists()


@pytest.mark.services
def test_it_still_accepts_new_history_rows_on_postgresql(history, admin_user):
    item, _, _ = history
    from medcot.services import item_version_create

    item_version_create(item=item, author_kind="llm", reason="draft", cot="x")
    assert ItemVersion.objects.filter(item=item).count() == 2
