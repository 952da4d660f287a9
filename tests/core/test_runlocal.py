"""`make run`'s process manager: web, worker (with beat) and the simulator on the embedded
defaults; a worker that dies is started again, as docker-compose's restart policy does."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.core.test_compose import free_port

ROOT = Path(__file__).resolve().parents[2]


def _worker_pids(schedule: Path) -> set[int]:
    """The worker is the process whose command line names this test's beat schedule."""
    found = subprocess.run(
        ["pgrep", "-f", f"schedule {schedule}"], capture_output=True, text=True, check=False
    )
    return {int(pid) for pid in found.stdout.split()}


def _at_least(n: int, pids: set[int]) -> set[int] | None:
    return pids if len(pids) >= n else None


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _serves(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # the page answered (a redirect to log in counts)
    except OSError:
        return False
    return True


def test_it_starts_everything_and_restarts_a_worker_that_died(tmp_path):
    var = tmp_path / "var"
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(
        MEDCOT_VAR_DIR=str(var),
        MEDCOT_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}/v1",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    log = (tmp_path / "runlocal.log").open("w+")
    proc = subprocess.Popen(
        [*manage, "runlocal", "--port", str(port), "--worker-concurrency", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    schedule = var / "celerybeat-schedule"

    def log_text() -> str:
        return (tmp_path / "runlocal.log").read_text()

    try:
        _wait(lambda: _serves(f"http://127.0.0.1:{port}/"), 60, "the web server")
        _wait(lambda: _serves(f"http://127.0.0.1:{sim_port}/health"), 30, "the simulator")
        # The worker and the beat it runs in a process of its own (same command line).
        first = _wait(lambda: _at_least(2, _worker_pids(schedule)), 30, "the worker and its beat")
        worker = next(pid for pid in first if _parent(pid) == proc.pid)
        os.kill(worker, signal.SIGKILL)  # as the kernel's OOM killer would: that process only
        _wait(lambda: "restarting worker (1 of 5)" in log_text(), 30, "the restart")
        # The killed worker's beat is gone with it, and the new worker has its own.
        second = _wait(
            lambda: (
                _at_least(2, _worker_pids(schedule)) if not first & _worker_pids(schedule) else None
            ),
            30,
            "a new worker and beat, and none of the old",
        )
        assert len(second) == 2 and proc.poll() is None
        assert _serves(f"http://127.0.0.1:{port}/")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.seek(0)
        output = log.read()
        log.close()
    assert "worker exited (-9)" in output and "restarting worker (1 of 5)" in output
    assert not _worker_pids(schedule), "Ctrl-C stops the worker too"
