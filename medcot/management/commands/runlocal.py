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


class Command(BaseCommand):
    help = "Start web + worker (+ simulated LLM) on localhost; the `make run` command."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--worker-concurrency", type=int, default=16)

    def handle(self, *args, **opts):
        python = sys.executable
        children: list[tuple[str, subprocess.Popen]] = []

        def start(name: str, argv: list[str]) -> None:
            self.stdout.write(f"starting {name}: {' '.join(argv[1:])}")
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
        try:
            while not stopping:
                for name, proc in children:
                    if proc.poll() is not None:
                        self.stderr.write(self.style.ERROR(f"{name} exited ({proc.returncode})"))
                        stopping = True
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
