"""A Celery pool that holds thousands of LLM jobs per worker process without a thread each.

`celery -A medcot worker -Q llm -P custom -c 1024` (medcot/celery.py makes `custom` this pool
unless CELERY_CUSTOM_WORKER_POOL names another). Each task runs as a greenlet on one asyncio
loop per process (`generation/aio.py`): while it waits for its model, a slot of the in-flight
limit or a backoff, it costs a greenlet and a socket; database steps go to the worker's few
database threads (`generation/dbexec.py`). `-c` bounds the jobs a worker holds at once (with
`--prefetch-multiplier 1` Celery takes no more messages than that), and the profile's max in
flight, shared through Redis by every worker on every host, bounds the calls.

Only the LLM job task runs on the loop (`LOOP_TASKS`). A worker that also consumes the default
queue runs those tasks (imports, releases, the sweep), which use the ORM in their own thread,
on a few threads of their own (`OTHER_TASK_THREADS`), so they never stall the loop.

Acknowledgement is Celery's own: a task's message is acknowledged when its greenlet returns
(`acks_late`), so a killed worker's jobs are delivered again, as with the thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

from celery.concurrency.base import BasePool, apply_target

from generation import aio

log = logging.getLogger(__name__)


def _raise_open_files_limit() -> None:
    """A socket per call in flight: take the hard limit on open files, not the soft one
    (often 1,024, fewer than the calls a worker holds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warning("Could not raise the open files limit from %s to %s", soft, hard)


class ApplyResult:
    def __init__(self, future: Future) -> None:
        self.f = future
        self.get = future.result

    def wait(self, timeout: float | None = None) -> None:
        futures_wait([self.f], timeout)


# Tasks written for the loop: every wait inside them goes through `generation.aio`.
LOOP_TASKS = frozenset({"generation.tasks.job"})
OTHER_TASK_THREADS = 4


class TaskPool(BasePool):
    """LLM jobs as greenlets on this process's asyncio loop; other tasks on a few threads."""

    body_can_be_buffer = True
    signal_safe = False
    # How long a warm shutdown waits for jobs in flight before leaving them to redelivery.
    STOP_GRACE_SECONDS = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._running: set[Future] = set()
        self._lock = threading.Lock()
        self._others = ThreadPoolExecutor(OTHER_TASK_THREADS, thread_name_prefix="medcot-task")

    def on_start(self) -> None:
        _raise_open_files_limit()
        aio.loop_start()

    def on_apply(
        self,
        target,
        args: tuple | None = None,
        kwargs: dict | None = None,
        callback=None,
        accept_callback=None,
        **_: Any,
    ) -> ApplyResult:
        # Celery passes the task's name first (`Request.execute_using_pool`).
        if args and args[0] in LOOP_TASKS:
            future = aio.submit(apply_target, target, args, kwargs, callback, accept_callback)
        else:
            future = self._others.submit(
                apply_target, target, args, kwargs, callback, accept_callback
            )
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._done)
        return ApplyResult(future)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._running.discard(future)

    def on_stop(self) -> None:
        with self._lock:
            running = list(self._running)
        if running:
            log.info("Waiting for %d LLM jobs in flight to finish", len(running))
            futures_wait(running, timeout=self.STOP_GRACE_SECONDS)
        from generation.client import async_clients_close, slots_flush

        slots_flush(timeout=5)
        loop = aio.loop_get()
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(async_clients_close(), loop).result(timeout=5)
            except Exception:  # closing is a courtesy to the server; the process ends anyway
                log.debug("Could not close the HTTP sessions", exc_info=True)
        self._others.shutdown(wait=False, cancel_futures=True)
        aio.loop_stop()
        super().on_stop()

    def on_terminate(self) -> None:
        aio.loop_stop()

    def _get_info(self) -> dict[str, Any]:
        info = super()._get_info()
        with self._lock:
            running = len(self._running)
        info.update({"max-concurrency": self.limit, "jobs": running, "threads": 1})
        return info
