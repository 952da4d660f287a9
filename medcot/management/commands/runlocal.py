"""Run MedCoT on one machine: the web server, a real Celery worker, and — when no LLM is
configured — the simulated OpenAI-compatible server. Ctrl-C stops all of them."""

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


class Command(BaseCommand):
    help = "Start web + worker (+ simulated LLM) on localhost; the `make run` command."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--worker-concurrency", type=int, default=16)

    def handle(self, *args, **opts):
        python = sys.executable
        children: list[tuple[str, subprocess.Popen]] = []

        commands: dict[str, list[str]] = {}

        def start(name: str, argv: list[str]) -> None:
            self.stdout.write(f"starting {name}: {' '.join(argv[1:])}")
            commands[name] = argv
            children.append((name, subprocess.Popen(argv)))  # noqa: S603 — our own commands

        if not settings.MEDCOT_LLM_BASE_URL and "llmsim" in get_commands():
            sim = urlparse(settings.MEDCOT_SIMULATOR_URL)
            start(
                "simulated LLM",
                [
                    python,
                    "manage.py",
                    "llmsim",
                    "--host",
                    sim.hostname or "127.0.0.1",
                    "--port",
                    str(sim.port or 8765),
                ],
            )
        start(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "medcot",
                "worker",
                "--queues",
                "default,llm",
                "--pool",
                "threads",
                "--concurrency",
                str(opts["worker_concurrency"]),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--beat",
                "--schedule",
                str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        )
        start(
            "web",
            [python, "manage.py", "runserver", f"{opts['host']}:{opts['port']}", "--noreload"],
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nMedCoT is running on http://{opts['host']}:{opts['port']}/ "
                "(log in with a demo login printed above; Ctrl-C stops everything)\n"
            )
        )
        stopping = False

        def stop(*_args) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        restarts = 0
        try:
            while not stopping:
                for index, (name, proc) in enumerate(children):
                    if proc.poll() is None or stopping:
                        continue
                    self.stderr.write(self.style.ERROR(f"{name} exited ({proc.returncode})"))
                    # A supervisor's job, as docker-compose's restart policy does in production:
                    # the worker and the simulator come back (their work is idempotent); the web
                    # server exiting, or restarts without end, stop everything.
                    if name == "web" or restarts >= MAX_RESTARTS:
                        stopping = True
                        continue
                    restarts += 1
                    self.stderr.write(f"restarting {name} ({restarts} of {MAX_RESTARTS})")
                    children[index] = (name, subprocess.Popen(commands[name]))  # noqa: S603
                time.sleep(0.5)
        finally:
            for _name, proc in children:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 10
            for _name, proc in children:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
