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
    # A worker that runs many jobs at once also tells the others which it runs (see below).
    job_locks_start()


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


# -- which jobs this process is running ------------------------------------------------------
#
# A broker can deliver a job's message again while the job still runs: on Redis, a message
# left unacknowledged for longer than the visibility timeout goes back to the queue, and the
# next worker gets the same message (the same task id, so the same claim). The claim alone
# cannot tell that copy from the redelivery of a killed worker's message, which must take the
# job over. So a worker holds a PostgreSQL advisory lock per job it runs, on a connection of
# its own: the lock lives exactly as long as the job's copy does — released when the copy
# ends, and by the server when the process dies (its connection goes with it). A delivery
# that cannot take the lock finds the job running elsewhere and does nothing; one that can,
# takes the job over whatever its claim.

# The advisory lock of job `id` is (JOB_LOCK_SPACE << 32) | id: in `pg_locks` classid =
# JOB_LOCK_SPACE, objid = id, objsubid = 1 (the one-bigint form). "MC".
JOB_LOCK_SPACE = 0x4D43


def job_lock_key(job_id: int) -> int:
    return (JOB_LOCK_SPACE << 32) | (job_id & 0xFFFFFFFF)


class _JobLocks:
    """This process's job locks: one thread owns the connection that holds them, and takes
    and gives back the locks asked for meanwhile in one statement each."""

    RECONNECT_DELAY = 1.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests: list[tuple[str, int, object]] = []
        self._stopping = False
        # Jobs a copy in this process runs now (a session's advisory locks are re-entrant, so
        # a second copy in the same process must be turned away here).
        self.running: set[int] = set()
        # Jobs whose lock the connection holds (taken again after a reconnection).
        self.locked: set[int] = set()
        self._thread = threading.Thread(target=self._serve, name="medcot-joblocks", daemon=True)
        self._thread.start()

    # The calls of the jobs, from any thread or greenlet.

    def request(self, op: str, job_id: int):
        from concurrent.futures import Future

        future: Future = Future()
        with self._cond:
            self._requests.append((op, job_id, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=5)

    # The thread.

    def _serve(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._requests and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        for _, _, future in self._requests:
                            future.set_result(None)
                        return
                    batch, self._requests = self._requests, []
                try:
                    self._handle(batch)
                except Exception:  # never leave later jobs waiting on a dead thread
                    log.exception("Job locks: a batch failed")
                    for _, _, future in batch:
                        _settle(future, None)
        finally:
            connection.close()

    def _handle(self, batch: list[tuple[str, int, object]]) -> None:
        locks = [(job_id, future) for op, job_id, future in batch if op == "lock"]
        unlocks = [(job_id, future) for op, job_id, future in batch if op == "unlock"]
        try:
            got = self._execute([job_id for job_id, _ in locks], [job_id for job_id, _ in unlocks])
        except Exception as exc:  # the connection failed: nothing is known of these locks
            log.warning("Job locks unavailable (%s); reconnecting", exc)
            connection.close()
            self.locked.difference_update(job_id for job_id, _ in unlocks)
            for _, future in locks + unlocks:
                _settle(future, None)
            time.sleep(self.RECONNECT_DELAY)
            return
        for job_id, future in locks:
            if not _settle(future, got.get(job_id, False)) and got.get(job_id):
                # Nobody waits for this lock any more (its job was cancelled, the loop is
                # stopping): give it back rather than hold it for the life of the process.
                self.request("unlock", job_id)
        for _, future in unlocks:
            _settle(future, True)

    def _execute(self, locks: list[int], unlocks: list[int]) -> dict[int, bool]:
        if connection.connection is None:
            # A new session (the first, or after a failure) holds none of the old one's locks:
            # take back those of the jobs this process still runs. One a copy elsewhere took
            # over meanwhile stays with that copy.
            self.locked.difference_update(unlocks)
            unlocks = []
            connection.ensure_connection()
            again = self._try(sorted(self.locked))
            self.locked = {job_id for job_id, ok in again.items() if ok}
        ids = [job_id for job_id in unlocks if job_id in self.locked]
        if ids:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS t(k)",
                    [[job_lock_key(i) for i in ids]],
                )
            self.locked.difference_update(ids)
        got = self._try(locks)
        self.locked.update(job_id for job_id, ok in got.items() if ok)
        return got

    def _try(self, ids: list[int]) -> dict[int, bool]:
        if not ids:
            return {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT k, pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) AS t(k)",
                [[job_lock_key(i) for i in ids]],
            )
            rows = cursor.fetchall()
        by_key = {job_lock_key(i): i for i in ids}
        return {by_key[key]: bool(ok) for key, ok in rows}


def _settle(future, value) -> bool:
    """Give `future` its result unless it was cancelled meanwhile; whether it took it."""
    if not future.set_running_or_notify_cancel():
        return False
    future.set_result(value)
    return True


_job_locks: _JobLocks | None = None


def job_locks_start() -> None:
    """Hold a lock per running job in this process (a worker, at start; tests)."""
    global _job_locks
    with _lock:
        if _job_locks is None and connection.vendor == "postgresql":
            _job_locks = _JobLocks()


def job_locks_stop() -> None:
    global _job_locks
    with _lock:
        locks, _job_locks = _job_locks, None
    if locks is not None:
        locks.stop()


class JobHold:
    """What `job_held` found: `held` is True when this copy holds the job's lock, False when
    another copy of the job runs (in this process or another), None when nothing is known (no
    job locks in this process, or their connection failed)."""

    __slots__ = ("held",)

    def __init__(self, held: bool | None) -> None:
        self.held = held


class job_held:
    """`with job_held(job_id) as hold:` — take the job's lock for this copy; give it back at
    the end, before the task's message is acknowledged or put back."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.locks = _job_locks
        self.hold = JobHold(None)
        self._mine = False

    def __enter__(self) -> JobHold:
        locks = self.locks
        if locks is None:
            return self.hold
        with locks._cond:
            if self.job_id in locks.running:
                self.hold.held = False
                return self.hold
            locks.running.add(self.job_id)
        try:
            self.hold.held = aio.wait_future(locks.request("lock", self.job_id))
        except BaseException:  # cancelled while waiting: `__exit__` will not run
            with locks._cond:
                locks.running.discard(self.job_id)
            raise
        self._mine = True
        return self.hold

    def __exit__(self, *exc) -> None:
        locks = self.locks
        if not self._mine or locks is None:
            return
        with locks._cond:
            locks.running.discard(self.job_id)
        if self.hold.held:
            aio.wait_future(locks.request("unlock", self.job_id))
