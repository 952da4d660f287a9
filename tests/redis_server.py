"""A throwaway redis-server of a test's own, for tests that stop and restart Redis under a
client: the shared test Redis (MEDCOT_TEST_REDIS_URL) serves other tests and must stay up."""

import shutil
import socket
import subprocess
import time

import pytest

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server on a free loopback port, keeping its files in `data_dir`, that can be
    stopped and started again on the same port. `durable` turns on the append-only file with
    an fsync on every write, so queued messages survive a restart."""

    def __init__(self, data_dir, *, durable: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self.durable = durable
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.durable:
            persistence = ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.data_dir), "--save", ""),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        pytest.fail("the private redis-server did not start")

    def stop(self) -> None:
        """SIGTERM and wait; a no-op when the server is not running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
