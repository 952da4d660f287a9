"""Run MedCoT on one machine: the web server, a real Celery worker, and — when no LLM is
configured — the simulated OpenAI-compatible server. Ctrl-C stops all of them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand

# How many times a crashed worker or simulator is started again before runlocal gives up.
MAX_RESTARTS = 5


def _spawn(argv: list[str]) -> subprocess.Popen:
    """A child in a process group of its own, so that what it leaves behind can be found."""
    return subprocess.Popen(argv, process_group=0)  # noqa: S603 — our own commands


def _kill_leftovers(proc: subprocess.Popen) -> None:
    """Kill what is left of a child's process group once the child itself is gone. The worker
    runs beat (`--beat`) in a process of its own: a worker killed with SIGKILL leaves that
    beat running, and the restarted worker would start a second one beside it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _commands(*, host: str, port: int, worker_concurrency: int) -> dict[str, list[str]]:
    """What runlocal starts, by name, in the order it starts them."""
    python = sys.executable
    commands: dict[str, list[str]] = {}
    if not settings.MEDCOT_LLM_BASE_URL and "llmsim" in get_commands():
        sim = urlparse(settings.MEDCOT_SIMULATOR_URL)
        commands["simulated LLM"] = [
            python,
            "manage.py",
            "llmsim",
            "--host",
            sim.hostname or "127.0.0.1",
            "--port",
            str(sim.port or 8765),
        ]
    commands["worker"] = [
        python,
        "-m",
        "celery",
        "-A",
        "medcot",
        "worker",
        "--queues",
        "default,llm",
        # The asyncio pool (generation/aiopool.py); the celery command reads
        # CELERY_CUSTOM_WORKER_POOL before it loads the app, so it is set below.
        "--pool",
        "custom",
        "--concurrency",
        str(worker_concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--beat",
        "--schedule",
        str(settings.VAR_DIR / "celerybeat-schedule"),
    ]
    commands["web"] = [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"]
    return commands


class _Stopping:
    """Set by a signal or by the supervisor. A plain attribute, not a `threading.Event`: a
    signal handler may run while the main thread holds the event's lock."""

    def __init__(self) -> None:
        self.now = False

    def __call__(self, *_args) -> None:
        self.now = True


def _stop_all(children: list[tuple[str, subprocess.Popen]]) -> None:
    """Terminate the children, give them ten seconds together, then kill what is left."""
    for _name, proc in children:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for _name, proc in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill_leftovers(proc)


class Command(BaseCommand):
    help = "Start web + worker (+ simulated LLM) on localhost; the `make run` command."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        # LLM jobs held at once by the worker's asyncio pool (a greenlet each, not a thread).
        parser.add_argument("--worker-concurrency", type=int, default=64)

    def handle(self, *args, **opts):
        os.environ.setdefault("CELERY_CUSTOM_WORKER_POOL", "generation.aiopool:TaskPool")
        commands = _commands(
            host=opts["host"], port=opts["port"], worker_concurrency=opts["worker_concurrency"]
        )
        children: list[tuple[str, subprocess.Popen]] = []
        for name, argv in commands.items():
            self.stdout.write(f"starting {name}: {' '.join(argv[1:])}")
            children.append((name, _spawn(argv)))
        self.stdout.write(
            self.style.SUCCESS(
                f"\nMedCoT is running on http://{opts['host']}:{opts['port']}/ "
                "(log in with a demo login printed above; Ctrl-C stops everything)\n"
            )
        )
        stopping = _Stopping()
        # The children have process groups of their own, so a Ctrl-C or a closed terminal
        # reaches only this process, which stops them all.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stopping)
        try:
            self._supervise(children, commands, stopping)
        finally:
            _stop_all(children)

    def _supervise(
        self,
        children: list[tuple[str, subprocess.Popen]],
        commands: dict[str, list[str]],
        stopping: _Stopping,
    ) -> None:
        """Watch the children until told to stop, starting a crashed one again."""
        restarts = 0
        while not stopping.now:
            for index, (name, proc) in enumerate(children):
                if proc.poll() is None or stopping.now:
                    continue
                self.stderr.write(self.style.ERROR(f"{name} exited ({proc.returncode})"))
                _kill_leftovers(proc)
                # A supervisor's job, as docker-compose's restart policy does in production:
                # the worker and the simulator come back (their work is idempotent); the web
                # server exiting, or restarts without end, stop everything.
                if name == "web" or restarts >= MAX_RESTARTS:
                    stopping.now = True
                    continue
                restarts += 1
                self.stderr.write(f"restarting {name} ({restarts} of {MAX_RESTARTS})")
                children[index] = (name, _spawn(commands[name]))
            time.sleep(0.5)
