"""Many jobs on one asyncio loop, written as plain synchronous code.

An LLM worker on the asyncio pool (`generation/aiopool.py`) runs each job in a greenlet of
its own on one event loop per process. The job's code stays synchronous (`pipeline.py`,
`client.chat`); only the few places where it waits — a model call, a slot of the in-flight
limit, a database step, a backoff — check `bridged()` and, inside such a greenlet, hand an
awaitable to the loop with `await_()`. The greenlet is suspended until it completes, and the
loop runs every other job meanwhile. A job waiting for its model costs a greenlet and a socket,
not a thread (the same bridge SQLAlchemy's asyncio support uses).

Outside the pool (web requests, commands, tests, Celery's thread pool) nothing is bridged and
the same code simply blocks its thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _Bridged(greenlet):
    """A greenlet running synchronous code for the event loop of `_loop`."""


def bridged() -> bool:
    """True inside a job run by `run_sync` (waits must then go through `await_`)."""
    return isinstance(getcurrent(), _Bridged)


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for `awaitable` from synchronous code running in a bridged greenlet: the greenlet
    hands it to the loop and is resumed with its result (or its exception)."""
    current = getcurrent()
    if not isinstance(current, _Bridged):
        raise RuntimeError("await_() outside a bridged greenlet")
    return current.parent.switch(awaitable)


async def run_sync(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """Run the synchronous `fn` on the loop, in a greenlet of its own; every `await_` inside
    it is awaited here."""
    child = _Bridged(fn, parent=getcurrent())
    pending: Any = child.switch(*args, **kwargs)
    while not child.dead:
        try:
            value = await pending
        except BaseException as exc:  # the job sees the awaitable's failure where it waited
            pending = child.throw(exc)
        else:
            pending = child.switch(value)
    return pending


def wait_future(future: concurrent.futures.Future[T]) -> T:
    """The result of a thread-safe future: awaited in a bridged greenlet, blocked on in a
    thread."""
    if bridged():
        return await_(asyncio.wrap_future(future))
    return future.result()


def sleep(seconds: float) -> None:
    if bridged():
        await_(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


# -- the loop of this process -----------------------------------------------------------------

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def loop_start() -> asyncio.AbstractEventLoop:
    """Start this process's event loop in a thread of its own (once)."""
    global _loop, _thread
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="medcot-aio", daemon=True)
            _thread.start()
            started.wait()
            _loop = loop
        return _loop


def loop_get() -> asyncio.AbstractEventLoop | None:
    return _loop


def loop_stop() -> None:
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is not None:
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)


def submit(fn: Callable[..., T], /, *args, **kwargs) -> concurrent.futures.Future[T]:
    """Run the synchronous `fn` as a job on this process's loop; thread-safe."""
    loop = _loop or loop_start()
    return asyncio.run_coroutine_threadsafe(run_sync(fn, *args, **kwargs), loop)
