"""Database work for LLM tasks, on a few threads of its own.

An LLM worker runs many tasks at once on Celery's thread pool (`--pool threads`), because a
task spends almost all of its life waiting for a model. If every one of those threads opened
its own database connection, 64 or 256 calls in flight would need as many PostgreSQL
connections. Instead, tasks hand each short piece of database work to a small, fixed pool of
threads that own the connections: in-flight capacity and database connections are sized
separately.

On the asyncio pool (`generation/aiopool.py`) a job runs as a greenlet on the worker's event
loop, and `in_db()` suspends it while a database thread does the step, so thousands of jobs in
flight still share these few connections.

A database that refuses a connection because it has no room for one ("too many clients") is
back-pressure, not a failure: the step waits for a connection, with capped backoff, and runs
when it gets one (the step had not started, so running it then is safe).

Outside such a worker (web requests, management commands, tests, eager tasks) `in_db()` simply
calls the function in the current thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import OperationalError, close_old_connections, connection

from generation import aio

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


_local = threading.local()
# Checking a connection (a health-check query) before every step would cost a round trip per
# step; once a second per thread still replaces a connection that went stale while idle.
CHECK_INTERVAL = 1.0


# PostgreSQL's refusals for lack of room (SQLSTATE 53300 too_many_connections, and the slots
# kept for superusers or replication): worth waiting for, unlike a wrong password.
_NO_ROOM = ("too many clients", "too many connections", "remaining connection slots")
# How long a step waits for a connection before the job is re-queued instead.
CONNECT_WAIT_SECONDS = 300.0


def _connect(conn=None) -> None:
    """Open this thread's connection (or `conn`), waiting while the server has no room for it."""
    from generation.client import LocalLimitReached

    conn = conn if conn is not None else connection
    delay, since = 0.05, time.monotonic()
    while True:
        try:
            conn.ensure_connection()
            return
        except OperationalError as exc:
            if not any(word in str(exc).lower() for word in _NO_ROOM):
                raise
            waited = time.monotonic() - since
            if waited >= CONNECT_WAIT_SECONDS:
                raise LocalLimitReached(f"No database connection for {waited:.0f}s: {exc}") from exc
            log.warning("The database has no room for a connection (%s); waiting", exc)
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 5.0)


def _run(fn: Callable[..., T], args, kwargs) -> T:
    # A connection left broken or past its age by the previous job is replaced first.
    now = time.monotonic()
    if now - getattr(_local, "checked", 0.0) >= CHECK_INTERVAL:
        close_old_connections()
        _local.checked = now
    if connection.connection is None:
        _connect()
    try:
        return fn(*args, **kwargs)
    except BaseException:
        # After a failure the connection may be unusable: check it before the next step.
        _local.checked = 0.0
        raise


def enable(threads: int) -> None:
    """Route `in_db()` through `threads` dedicated threads (called once at worker start)."""
    global _executor
    with _lock:
        if _executor is None and threads > 0:
            _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="medcot-db")


def enabled() -> bool:
    return _executor is not None


def in_db(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run `fn(*args, **kwargs)` where database connections live and return its result."""
    executor = _executor
    if executor is None:
        return fn(*args, **kwargs)
    if aio.bridged():
        loop = asyncio.get_running_loop()
        return aio.await_(loop.run_in_executor(executor, _run, fn, args, kwargs))
    return executor.submit(_run, fn, args, kwargs).result()


# Enough that a drafting burst (CoTs and expansions, the heaviest steps) does not queue behind
# the database threads: with 4 a step waited ~200 ms for a thread and the threads were the
# bottleneck of a run's first phase; 8 per worker are still few connections.
DEFAULT_THREADS = 8


def threads_from_env() -> int:
    """MEDCOT_DB_THREADS overrides the default of 8 threads for a threaded worker."""
    value = os.getenv("MEDCOT_DB_THREADS", "")
    return int(value) if value.strip() else DEFAULT_THREADS
