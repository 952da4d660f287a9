import os
import shutil
import socket

import pytest
from django.conf import settings

from medcot.roles import ADMIN, EXPERT, REVIEWER
from review.services import person_create

REQUIRE_SERVICES = os.getenv("MEDCOT_REQUIRE_SERVICES") == "1"
SHARED_DATA = settings.MEDCOT_DEMO_DATA_DIR


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def using_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def redis_url() -> str:
    return os.getenv("MEDCOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pytest_collection_modifyitems(config, items):
    """Tests marked `services` need PostgreSQL and Redis. Without them they skip on a laptop,
    but CI sets MEDCOT_REQUIRE_SERVICES=1 and then a missing service fails the run instead."""
    have = using_postgres() and _reachable("127.0.0.1", 6379)
    have_browser = shutil.which("chromium") is not None or os.path.exists("/usr/bin/chromium")
    for item in items:
        if "services" in item.keywords and not have:
            if REQUIRE_SERVICES:
                item.add_marker(pytest.mark.usefixtures("_fail_missing_services"))
            else:
                item.add_marker(
                    pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL) and Redis")
                )
        if "browser" in item.keywords and not have_browser:
            if REQUIRE_SERVICES:
                item.add_marker(pytest.mark.usefixtures("_fail_missing_browser"))
            else:
                item.add_marker(pytest.mark.skip(reason="needs Debian's chromium"))


@pytest.fixture(autouse=True)
def _clear_cache():
    """Login-failure counts (medcot.login_throttle) live in the cache; tests start with none."""
    from django.core.cache import cache

    from generation.dedup import candidate_keys
    from generation.services import run_facts_clear

    cache.clear()
    # Per-process caches keyed by row ids, which a rolled-back test database hands out again.
    run_facts_clear()
    candidate_keys.clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language: a Chinese request through the test client
    leaves Chinese active in the thread (LocaleMiddleware activates, nothing deactivates), and a
    later test would otherwise read its words in whatever language the test before it left."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def eager_celery():
    """Run tasks in the calling thread. Set on the Celery app itself: once anything has read
    the app's configuration, changing Django's CELERY_* settings no longer reaches it."""
    from medcot.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager


@pytest.fixture
def _fail_missing_services():
    pytest.fail("MEDCOT_REQUIRE_SERVICES=1 but PostgreSQL (DATABASE_URL) or Redis is missing")


@pytest.fixture
def _fail_missing_browser():
    pytest.fail("MEDCOT_REQUIRE_SERVICES=1 but /usr/bin/chromium is missing")


def _person(username: str, roles: list[str], specialties: list[str] | None = None):
    return person_create(
        username=username,
        password="correct horse battery staple",
        roles=roles,
        display_name=username.replace("_", " ").title(),
        specialties=specialties or [],
    )


@pytest.fixture
def reviewer(db):
    return _person("reviewer", [REVIEWER])


@pytest.fixture
def expert_a(db):
    return _person("expert_a", [EXPERT], ["Cardiology"])


@pytest.fixture
def expert_b(db):
    return _person("expert_b", [EXPERT], ["Cardiology", "Neurology"])


@pytest.fixture
def expert_c(db):
    return _person("expert_c", [EXPERT], ["Neurology"])


@pytest.fixture
def admin_user(db):
    return _person("admin", [ADMIN])


@pytest.fixture
def outsider(db):
    return _person("outsider", [])


@pytest.fixture
def project(db):
    from tests.factories import ProjectFactory

    return ProjectFactory()


@pytest.fixture
def worker(transactional_db, tmp_path):
    """A real Celery worker process on the default queue, on Redis and this test's PostgreSQL
    database (data must be committed, hence transactional_db)."""
    import subprocess
    import sys
    from pathlib import Path

    import redis
    from django.db import connection

    redis.Redis.from_url(redis_url()).flushdb()
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=(
            f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}"
        ),
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
        cwd=Path(__file__).resolve().parents[1],
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


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are plain synchronous calls, so Django's guard is lifted here only.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A browser test's database connections are closed as soon as it returns. Seen in
    tests/generation/test_browser_runs.py: the test's own ORM calls ran on a connection other
    than the one the database fixtures set up and flushed with, and nothing closed it, so at
    the session's end dropping the test database warned that another session was using it.
    A connection inside a test's transaction (a non-transactional test) is left alone."""
    try:
        return (yield)
    finally:
        if "browser" in pyfuncitem.fixturenames:
            from django.db import connections

            for conn in connections.all(initialized_only=True):
                if not conn.in_atomic_block:
                    conn.close()
