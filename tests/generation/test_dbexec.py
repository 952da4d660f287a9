"""A database with no room for another connection is back-pressure for a worker's database
threads: the step waits for a connection instead of failing its job."""

import threading
import time
import uuid

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from generation import dbexec

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs PostgreSQL",
)


def _admin_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"


@pytest.fixture
def unblocked(django_db_setup, django_db_blocker):
    """Database access outside a test transaction: these tests open connections of their own."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def limited_alias(unblocked):
    """A database alias whose role may open no connection at all until the test allows it
    (superusers ignore connection limits, so it is a role of its own)."""
    role = f"medcot_limited_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    alias = "limited"
    connections.settings[alias] = {**settings.DATABASES["default"], "USER": role, "PASSWORD": ""}
    try:
        yield alias, role
    finally:
        connections[alias].close()
        del connections.settings[alias]
        with psycopg.connect(_admin_url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
            )
            admin.execute(f'DROP ROLE "{role}"')


def test_a_connection_refused_for_lack_of_room_is_waited_for(limited_alias):
    alias, role = limited_alias
    result: dict = {}

    def step():
        try:
            dbexec._connect(connections[alias])
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT current_user")
                result["user"] = cursor.fetchone()[0]
        except Exception as exc:
            result["error"] = exc
        finally:
            connections[alias].close()

    thread = threading.Thread(target=step)
    thread.start()
    time.sleep(1.5)
    # Refused ("too many connections for role"), and still waiting rather than failed.
    assert thread.is_alive(), result
    with psycopg.connect(_admin_url(), autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 2')
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result == {"user": role}


def test_other_connection_errors_still_fail_at_once(unblocked):
    alias = "nowhere"
    connections.settings[alias] = {**settings.DATABASES["default"], "NAME": "no_such_db_medcot"}
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match="does not exist"):
            dbexec._connect(connections[alias])
        assert time.monotonic() - started < 5
    finally:
        connections[alias].close()
        del connections.settings[alias]
