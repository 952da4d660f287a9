"""Database work for LLM tasks, on a few threads of its own.

An LLM worker runs many tasks at once on Celery's thread pool (`--pool threads`), because a
task spends almost all of its life waiting for a model. If every one of those threads opened
its own database connection, 64 or 256 calls in flight would need as many PostgreSQL
connections. Instead, tasks hand each short piece of database work to a small, fixed pool of
threads that own the connections: in-flight capacity and database connections are sized
separately.

Outside such a worker (web requests, management commands, tests, eager tasks) `in_db()` simply
calls the function in the current thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import close_old_connections

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


_local = threading.local()
# Checking a connection (a health-check query) before every step would cost a round trip per
# step; once a second per thread still replaces a connection that went stale while idle.
CHECK_INTERVAL = 1.0


def _run(fn: Callable[..., T], args, kwargs) -> T:
    # A connection left broken or past its age by the previous job is replaced first.
    now = time.monotonic()
    if now - getattr(_local, "checked", 0.0) >= CHECK_INTERVAL:
        close_old_connections()
        _local.checked = now
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
    return executor.submit(_run, fn, args, kwargs).result()


# Enough that a drafting burst (CoTs and expansions, the heaviest steps) does not queue behind
# the database threads: with 4 a step waited ~200 ms for a thread and the threads were the
# bottleneck of a run's first phase; 8 per worker are still few connections.
DEFAULT_THREADS = 8


def threads_from_env() -> int:
    """MEDCOT_DB_THREADS overrides the default of 8 threads for a threaded worker."""
    value = os.getenv("MEDCOT_DB_THREADS", "")
    return int(value) if value.strip() else DEFAULT_THREADS
