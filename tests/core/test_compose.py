"""docker-compose.yml cannot run here (no Docker engine), so its commands are run as they are,
outside Docker: the web command serves pages and static files in production mode, and the worker
command starts a worker that connects to Redis."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DEBUG="false",
        SECRET_KEY="compose-test-" + "k" * 50,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MEDCOT_HTTPS="false",
        MEDCOT_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    return env


def test_it_declares_the_four_services_and_a_migration_step():
    assert {"postgres", "redis", "web", "worker", "migrate"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["web"]["command"][0] == "gunicorn"
    assert "--queues" in COMPOSE["services"]["worker"]["command"]
    # --scale needs workers without a fixed container name or host port.
    assert "container_name" not in COMPOSE["services"]["worker"]
    assert "ports" not in COMPOSE["services"]["worker"]


def test_it_lists_every_setting_in_the_env_example():
    example = (ROOT / ".env.example").read_text()
    for name in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert f"\n{name}=" in "\n" + example


@pytest.mark.services
def test_it_serves_pages_and_static_files_with_the_web_command(tmp_path):
    env = production_env(tmp_path)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    command = [
        f"127.0.0.1:{port}" if part == "0.0.0.0:8000" else part
        for part in COMPOSE["services"]["web"]["command"]
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                page = urllib.request.urlopen(f"{base}/login/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        assert page.status == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        html = page.read().decode()
        static = html.split('href="/static/css/', 1)[1].split('"', 1)[0]
        css = urllib.request.urlopen(f"{base}/static/css/{static}", timeout=2)
        assert css.status == 200
        assert "max-age" in css.headers["Cache-Control"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.services
def test_it_starts_a_worker_with_the_worker_command(tmp_path):
    from tests.conftest import redis_url

    env = production_env(tmp_path)
    # The service's own environment (it names the asyncio pool), with this test's folders.
    service_env = COMPOSE["services"]["worker"].get("environment", {})
    env.update({k: str(v) for k, v in service_env.items() if k != "MEDCOT_VAR_DIR"})
    env["CELERY_BROKER_URL"] = redis_url()
    proc = subprocess.Popen(
        COMPOSE["services"]["worker"]["command"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if " ready." in line:
                break
        assert any(" ready." in line for line in seen), "".join(seen)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
