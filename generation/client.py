"""Calls to OpenAI-compatible chat endpoints through the `openai` SDK.

There is one retry layer, this one: the SDK's own retries are switched off (`max_retries=0`)
and Celery does not retry LLM tasks. Transient failures (timeouts, connection errors, 429,
500/502/503/504) are retried with exponential backoff and full jitter, honouring Retry-After;
400/401/403/404/422 fail at once; 402 means the account is out of balance, which no retry
fixes, so it stops the run instead.

Nothing here touches the database: the caller records each try (see `chat`).
"""

from __future__ import annotations

import email.utils
import errno
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import openai
from django.conf import settings

from generation import aio
from generation.reasoning import split_reasoning

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class ProfileSnapshot:
    """What a call needs to know about its profile, read once from the database."""

    id: int
    name: str
    base_url: str
    model: str
    api_key_env: str
    max_in_flight: int
    timeout_seconds: float
    max_retries: int
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    structured_output: str
    price_input_per_m: Decimal
    price_output_per_m: Decimal
    simulated: bool

    @classmethod
    def of(cls, profile) -> ProfileSnapshot:
        return cls(
            id=profile.pk,
            name=profile.name,
            base_url=profile.base_url,
            model=profile.model,
            api_key_env=profile.api_key_env,
            max_in_flight=profile.max_in_flight,
            timeout_seconds=profile.timeout_seconds,
            max_retries=profile.max_retries,
            temperature=profile.temperature,
            top_p=profile.top_p,
            max_tokens=profile.max_tokens,
            structured_output=profile.structured_output,
            price_input_per_m=profile.price_input_per_m,
            price_output_per_m=profile.price_output_per_m,
            simulated=profile.simulated,
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (
            Decimal(prompt_tokens) * self.price_input_per_m
            + Decimal(completion_tokens) * self.price_output_per_m
        ) / Decimal(1_000_000)


@dataclass
class ChatRequest:
    task: str
    messages: list[dict[str, str]]
    model: str = ""
    json_reply: bool = False
    # The JSON schema a reply must follow, sent when the profile's mode is json_schema.
    schema: dict | None = None
    schema_name: str = "reply"
    # Facts only the simulator is told (answer key, number of questions): sent as headers to
    # simulated profiles, never to real endpoints.
    sim_facts: dict[str, str] = field(default_factory=dict)


@dataclass
class ChatReply:
    content: str
    reasoning: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


@dataclass
class TryRecord:
    """One HTTP try, successful or not, for the call log."""

    try_number: int
    outcome: str  # ok | transient | fatal | payment
    model: str
    latency_ms: int
    http_status: int | None = None
    error: str = ""
    reply: ChatReply | None = None


class LLMError(Exception):
    outcome = "fatal"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientLLMError(LLMError):
    outcome = "transient"


class FatalLLMError(LLMError):
    outcome = "fatal"


class PaymentRequired(LLMError):
    """HTTP 402: the provider account is out of balance."""

    outcome = "payment"


class RetriesExhausted(LLMError):
    """A transient failure that persisted through every retry."""

    outcome = "transient"


class CallAborted(Exception):
    """The run was paused or cancelled while this call waited to retry."""


_clients: dict[tuple, openai.OpenAI] = {}
_async_clients: dict[tuple, _BridgedClient] = {}
_clients_lock = threading.Lock()


def api_key_for(profile: ProfileSnapshot) -> str:
    """The key from the environment variable the profile names. Servers without auth (vLLM,
    Ollama, the simulator) still need a non-empty string for the SDK."""
    if profile.api_key_env:
        return os.environ.get(profile.api_key_env, "") or "not-needed"
    return "not-needed"


def _limits(profile: ProfileSnapshot) -> httpx.Limits:
    # The in-flight limit is the bound on connections; the SDK's default pool (1,000, with a
    # pool timeout that would surface as a model timeout) must not be a second, lower one.
    # Keep as many idle connections as calls may be in flight, so calls reuse them.
    return httpx.Limits(
        max_connections=None, max_keepalive_connections=max(100, profile.max_in_flight)
    )


def _client_kwargs(profile: ProfileSnapshot) -> dict:
    return {
        "base_url": profile.base_url,
        "api_key": api_key_for(profile),
        # One retry layer: ours.
        "max_retries": 0,
        # Reasoning models take minutes; a slow reply is normal, a dead socket is not.
        "timeout": openai.Timeout(profile.timeout_seconds, connect=15.0),
    }


class _BridgedClient:
    """The async SDK client for jobs on the asyncio pool, with the sync client's `post`.

    It sends through the SDK's aiohttp transport (`DefaultAioHttpClient`): httpx's own async
    pool looks at every one of its connections (a `getpeername` each) whenever a reply
    completes, so its CPU per call grew with the calls in flight; aiohttp's does not."""

    def __init__(self, profile: ProfileSnapshot) -> None:
        # aiohttp caps a session at 100 connections unless told otherwise; the in-flight limit
        # is the cap that matters.
        limits = httpx.Limits(
            max_connections=profile.max_in_flight + 64,
            max_keepalive_connections=max(100, profile.max_in_flight),
        )
        self.client = openai.AsyncOpenAI(
            **_client_kwargs(profile), http_client=openai.DefaultAioHttpClient(limits=limits)
        )

    def post(self, *args, **kwargs):
        return aio.await_(self.client.post(*args, **kwargs))


def client_for(profile: ProfileSnapshot) -> openai.OpenAI | _BridgedClient:
    key = (profile.base_url, profile.api_key_env, profile.timeout_seconds, profile.max_in_flight)
    if aio.bridged():
        # One async client per process: the pool has one loop, and every job runs on it.
        client = _async_clients.get(key)
        if client is None:
            client = _async_clients[key] = _BridgedClient(profile)
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            http = openai.DefaultHttpxClient(limits=_limits(profile))
            client = openai.OpenAI(**_client_kwargs(profile), http_client=http)
            _clients[key] = client
        return client


async def async_clients_close() -> None:
    """Close the asyncio pool's HTTP sessions (on the loop, when the worker stops)."""
    clients = list(_async_clients.values())
    _async_clients.clear()
    for client in clients:
        await client.client.close()


def clients_reset() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        # Async clients belong to their loop, which closes their sockets when it stops.
        _async_clients.clear()


# -- in-flight limit ------------------------------------------------------------------------


class LocalLimitReached(Exception):
    """A limit of this machine (connections, open files, the limiter's Redis), not of the
    model, stopped a job for longer than it should wait in place: the job goes back to the
    queue and runs again (see `tasks.job_execute_task`); it is never failed for it."""


class SlotsUnavailable(LocalLimitReached):
    """The in-flight limiter's Redis stayed unreachable for longer than its grace period."""


class _LocalSlots:
    """The limit per process, when there is no Redis. Waiters wait on a future each: a thread
    blocks on it, a job on the asyncio pool awaits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, int], int] = {}
        self._waiters: dict[tuple[int, int], deque[Future]] = {}

    def acquire(self, profile: ProfileSnapshot) -> Callable[[], None]:
        key = (profile.id, profile.max_in_flight)
        with self._lock:
            if self._held.get(key, 0) < profile.max_in_flight:
                self._held[key] = self._held.get(key, 0) + 1
                return self._releaser(key)
            future: Future = Future()
            self._waiters.setdefault(key, deque()).append(future)
        return aio.wait_future(future)

    def _releaser(self, key: tuple[int, int]) -> Callable[[], None]:
        return lambda: self._release(key)

    def _release(self, key: tuple[int, int]) -> None:
        with self._lock:
            waiters = self._waiters.get(key)
            while waiters:
                future = waiters.popleft()
                if future.set_running_or_notify_cancel():
                    future.set_result(self._releaser(key))  # the place passes to the waiter
                    return
            self._held[key] -= 1


# Take up to ARGV[3] leases while fewer than the limit are held, in one atomic step: with
# separate ZADD and ZRANK calls, two workers whose clocks (scores) disagree could both see a
# free place. The leases are named ARGV[4]..n for n from a counter, so the work (and the
# reply) grows with the places taken, not with the calls waiting. Returns {taken, last n}.
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local taken = math.min(math.max(free, 0), tonumber(ARGV[3]))
if taken == 0 then return {0, 0} end
local last = redis.call('INCRBY', KEYS[2], taken)
for i = last - taken + 1, last do
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5] .. i)
end
return {taken, last}
"""

# Give leases back and wake as many waiters, in whichever processes they are. The wake list is
# kept short and expires, so wake-ups nobody waited for do not pile up.
_RELEASE_LUA = """
local freed = 0
for i = 2, #ARGV do
  freed = freed + redis.call('ZREM', KEYS[1], ARGV[i])
end
if freed > 0 then
  for i = 1, freed do redis.call('LPUSH', KEYS[2], 1) end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
  redis.call('EXPIRE', KEYS[2], 60)
end
return freed
"""


@dataclass(eq=False)
class _Waiter:
    profile: ProfileSnapshot
    future: Future
    since: float = field(default_factory=time.monotonic)


class _RedisSlots:
    """A counting semaphore shared by every worker process on every host: a sorted set of
    leases per profile, scored by their start time. A lease older than the call timeout
    belongs to a worker that died and is swept, so a killed worker cannot leak capacity.

    Waiting costs no connection: the calls of a process that wait for a place queue here, in
    memory, each on a future (a thread blocks on it, a job of the asyncio pool awaits it). One
    thread per process takes places for all of them, as many as are free in one script call,
    and when none is free blocks on the wake list (BLPOP) that releases push to, so a freed
    place is taken within a round trip; the short block timeout covers leases freed by expiry.
    Another thread gives leases back, in batches. So a process needs two or three Redis
    connections whether 10 or 10,000 calls wait in it.

    Redis going away for a moment (a restart, a failover) is not a reason to fail a call:
    waiters wait, with capped backoff, for up to `outage_seconds`, and then get
    `SlotsUnavailable`, which sends their job back to the queue. Releases that cannot reach
    Redis are kept and sent when it is back."""

    WAIT_SECONDS = 0.25
    # Leases asked for in one script call.
    BATCH = 1024

    def __init__(self, url: str, *, outage_seconds: float | None = None) -> None:
        import redis

        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=4, timeout=None, socket_connect_timeout=5, socket_timeout=10
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._take = self._redis.register_script(_ACQUIRE_LUA)
        self._give = self._redis.register_script(_RELEASE_LUA)
        self._transient = (redis.ConnectionError, redis.TimeoutError)
        if outage_seconds is None:
            outage_seconds = float(getattr(settings, "MEDCOT_LLM_SLOTS_OUTAGE_SECONDS", 60.0))
        self.outage_seconds = outage_seconds
        self._cond = threading.Condition()
        self._waiters: dict[int, deque[_Waiter]] = {}
        self._releases: deque[tuple[str, str, str, int]] = deque()
        # Leases handed from call to call in this process, to be renewed in Redis: (key,
        # token, new start time).
        self._renewals: deque[tuple[str, str, float]] = deque()
        self._releasing = 0
        self._pid = 0
        self._closed = False
        # Lease names: unique per limiter, numbered by Redis.
        self._prefix = f"{uuid.uuid4().hex[:12]}:"

    @staticmethod
    def _keys(profile: ProfileSnapshot) -> tuple[str, str]:
        key = f"medcot:llm:inflight:{profile.id}"
        return key, f"{key}:wake"

    def _threads_start(self) -> None:
        # Per process: a forked child starts its own (called with the condition held).
        if self._pid != os.getpid():
            self._pid = os.getpid()
            for target, name in ((self._acquirer, "acquire"), (self._releaser, "release")):
                threading.Thread(target=target, name=f"medcot-slots-{name}", daemon=True).start()

    def acquire(self, profile: ProfileSnapshot) -> Callable[[], None]:
        future: Future = Future()
        with self._cond:
            self._threads_start()
            self._waiters.setdefault(profile.id, deque()).append(_Waiter(profile, future))
            self._cond.notify_all()
        return aio.wait_future(future)

    def _release_later(
        self, profile: ProfileSnapshot, token: str, taken: float | None = None
    ) -> None:
        key, wake = self._keys(profile)
        with self._cond:
            self._threads_start()
            # The place passes straight to a call of this process waiting under the same limit
            # (or a higher one): no trip to Redis and back through two threads, which left the
            # place empty for a round trip or more (with 128 calls a second, a few places of
            # 64). The lease keeps its name; it is renewed once it is a third of its life old,
            # so it expires only if this process dies. A lower limit (a profile edited
            # mid-run) goes through Redis, which enforces it.
            waiters = self._waiters.get(profile.id)
            while waiters and waiters[0].profile.max_in_flight >= profile.max_in_flight:
                waiter = waiters.popleft()
                if not waiter.future.set_running_or_notify_cancel():
                    continue
                now = time.time()
                if taken is None or now - taken > (waiter.profile.timeout_seconds + 30) / 3:
                    self._renewals.append((key, token, now))
                    self._cond.notify_all()
                    taken = now
                waiter.future.set_result(self._lease(waiter.profile, token, taken))
                return
            self._releases.append((key, wake, token, profile.max_in_flight))
            self._cond.notify_all()

    def close(self) -> None:
        """Stop this limiter's threads once they have sent the releases they hold."""
        self.flush(5.0)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every release and renewal so far has reached Redis (at a worker's
        shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._releases or self._renewals or self._releasing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _acquirer(self) -> None:
        outage_started: float | None = None
        delay = 0.1
        while True:
            with self._cond:
                while not any(self._waiters.values()) and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                wanted = [
                    (waiters[0].profile, min(len(waiters), self.BATCH))
                    for waiters in self._waiters.values()
                    if waiters
                ]
            starving: list[str] = []
            try:
                for profile, count in wanted:
                    if not self._grant(profile, count):
                        starving.append(self._keys(profile)[1])
                if outage_started is not None:
                    log.info("In-flight limiter reached Redis again")
                    outage_started, delay = None, 0.1
                if starving:
                    self._redis.blpop(starving, timeout=self.WAIT_SECONDS)
            except self._transient as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                    log.warning("In-flight limiter lost Redis (%s); waiting for it", exc)
                self._fail_after_outage(outage_started, exc)
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, 5.0)

    def _grant(self, profile: ProfileSnapshot, wanted: int) -> bool:
        """Take places for the first `wanted` waiters of a profile; False when some are left
        waiting."""
        key, wake = self._keys(profile)
        # A slot is held for one HTTP try, which the client's timeout bounds.
        lease = profile.timeout_seconds + 30
        now = time.time()
        args = [now - lease, profile.max_in_flight, wanted, now, self._prefix]
        taken, last = self._take(keys=[key, f"{key}:seq"], args=args)
        with self._cond:
            queue = self._waiters[profile.id]
            for n in range(last - taken + 1, last + 1):
                token = f"{self._prefix}{n}"
                while queue:
                    waiter = queue.popleft()
                    if waiter.future.set_running_or_notify_cancel():
                        waiter.future.set_result(self._lease(waiter.profile, token, now))
                        break
                else:  # nobody waits for it any more
                    self._releases.append((key, wake, token, profile.max_in_flight))
                    self._cond.notify_all()
        return taken == wanted

    def _lease(self, profile: ProfileSnapshot, token: str, taken: float) -> Callable[[], None]:
        return lambda: self._release_later(profile, token, taken)

    def _fail_after_outage(self, outage_started: float, exc: Exception) -> None:
        now = time.monotonic()
        with self._cond:
            for waiters in self._waiters.values():
                for waiter in list(waiters):
                    waited = now - max(outage_started, waiter.since)
                    if waited >= self.outage_seconds:
                        waiters.remove(waiter)
                        if waiter.future.set_running_or_notify_cancel():
                            waiter.future.set_exception(
                                SlotsUnavailable(
                                    "The in-flight limiter's Redis was unreachable for "
                                    f"{waited:.0f}s: {exc}"
                                )
                            )

    def _releaser(self) -> None:
        delay = 0.1
        while True:
            with self._cond:
                while not self._releases and not self._renewals and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                renewals = list(self._renewals)
                self._renewals.clear()
                batch: dict[tuple[str, str, int], list[str]] = {}
                while self._releases:
                    key, wake, token, limit = self._releases.popleft()
                    batch.setdefault((key, wake, limit), []).append(token)
                self._releasing = len(batch) + len(renewals)
            failed: list[tuple[str, str, str, int]] = []
            if renewals:
                try:
                    pipe = self._redis.pipeline(transaction=False)
                    for key, token, now in renewals:
                        pipe.zadd(key, {token: now}, xx=True)
                    pipe.execute()
                except self._transient as exc:
                    log.warning("Could not renew %d in-flight leases yet (%s)", len(renewals), exc)
                    with self._cond:
                        self._renewals.extendleft(reversed(renewals))
            for (key, wake, limit), tokens in batch.items():
                try:
                    self._give(keys=[key, wake], args=[limit, *tokens])
                except self._transient as exc:
                    log.warning("Could not release %d in-flight leases yet (%s)", len(tokens), exc)
                    failed += [(key, wake, token, limit) for token in tokens]
            with self._cond:
                self._releasing = 0
                # Kept, in order, for the next try: a lease is given back as soon as Redis is
                # back, and only a worker that dies before that leaves one to expire.
                self._releases.extendleft(reversed(failed))
                self._cond.notify_all()
            if failed:
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.1


_slots: _LocalSlots | _RedisSlots | None = None
_slots_lock = threading.Lock()


def _slots_get() -> _LocalSlots | _RedisSlots:
    global _slots
    if _slots is None:
        with _slots_lock:
            if _slots is None:
                url = getattr(settings, "CELERY_BROKER_URL", "")
                redis_url = url.startswith(("redis://", "rediss://"))
                _slots = _RedisSlots(url) if redis_url else _LocalSlots()
    return _slots


def slots_flush(timeout: float = 5.0) -> bool:
    """Send the releases not yet sent (a worker shutting down calls this)."""
    slots = _slots
    return slots.flush(timeout) if isinstance(slots, _RedisSlots) else True


def slots_reset() -> None:
    global _slots
    slots, _slots = _slots, None
    if isinstance(slots, _RedisSlots):
        slots.close()


# -- one call -------------------------------------------------------------------------------


def _retry_after(response) -> float | None:
    if response is None:
        return None
    headers = response.headers
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def classify(exc: Exception) -> LLMError:
    """Map an SDK exception onto our three kinds of failure."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientLLMError("The model did not answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        return TransientLLMError(f"Could not connect to the model server: {exc.__cause__ or exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short(str(exc.message))
        if status == 402:
            return PaymentRequired(
                f"The LLM provider refused the call with HTTP 402 (out of balance): {detail}",
                status=status,
            )
        if status in TRANSIENT_STATUS:
            return TransientLLMError(
                f"HTTP {status}: {detail}", status=status, retry_after=_retry_after(exc.response)
            )
        return FatalLLMError(f"HTTP {status}: {detail}", status=status)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return TransientLLMError(f"The server sent a malformed response: {_short(str(exc))}")
    return FatalLLMError(f"{type(exc).__name__}: {_short(str(exc))}")


def chat_once(profile: ProfileSnapshot, request: ChatRequest) -> ChatReply:
    """One HTTP request, no retries. Raises an LLMError subclass on failure."""
    model = request.model or profile.model
    body: dict = {"model": model, "messages": request.messages}
    if profile.temperature is not None:
        body["temperature"] = profile.temperature
    if profile.top_p is not None:
        body["top_p"] = profile.top_p
    if profile.max_tokens:
        body["max_tokens"] = profile.max_tokens
    response_format = response_format_for(profile, request)
    if response_format is not None:
        body["response_format"] = response_format
    headers: dict[str, str] = {}
    if profile.simulated:
        headers["X-MedCoT-Task"] = request.task
        headers.update({f"X-MedCoT-Sim-{k}": str(v) for k, v in request.sim_facts.items()})
    started = time.monotonic()
    try:
        # The SDK's low-level POST, its documented way to call any endpoint: the same client,
        # authentication, timeouts and error types as `chat.completions.create`, without the
        # typed request and response objects, which cost about a millisecond of CPU per call
        # (a tenth of a call's whole budget when 128 calls a second share two cores).
        response = client_for(profile).post(
            "/chat/completions",
            body=body,
            cast_to=httpx.Response,
            options={"headers": headers} if headers else {},
        )
        completion = response.json()
    except openai.OpenAIError as exc:
        raise classify(exc) from exc
    except ValueError as exc:  # a body that is not JSON
        raise classify(exc) from exc
    latency_ms = int((time.monotonic() - started) * 1000)
    choices = completion.get("choices") if isinstance(completion, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        raise TransientLLMError("The server sent a reply without choices")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise TransientLLMError("The server sent a reply without a message")
    content, reasoning = split_reasoning(message)
    fault = reply_fault(content)
    if fault:
        raise TransientLLMError(fault)
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ChatReply(
        content=content or "",
        reasoning=reasoning or "",
        finish_reason=str(choice.get("finish_reason") or ""),
        model=str(completion.get("model") or model),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        latency_ms=latency_ms,
    )


def response_format_for(profile: ProfileSnapshot, request: ChatRequest) -> dict | None:
    """The `response_format` of a request that wants JSON, in the profile's structured-output
    mode: a strict JSON schema, a JSON object, or nothing (the prompt alone asks for JSON)."""
    if not request.json_reply:
        return None
    mode = profile.structured_output
    if mode == "json_schema" and request.schema is not None:
        return {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "strict": True, "schema": request.schema},
        }
    if mode in {"json_schema", "json_object"}:
        return {"type": "json_object"}
    return None


# A 200 whose content is a proxy's or gateway's error page, not a model's reply.
_TRANSPORT_PAGE = re.compile(
    r"^\s*(?:<!doctype\s+html|<html|<\?xml|(?:502|503|504)\s+(?:bad\s+gateway|service"
    r"\s+(?:temporarily\s+)?unavailable|gateway\s+time-?out)|upstream\s+(?:connect\s+)?"
    r"(?:error|request\s+timeout)|internal\s+server\s+error\s*$)",
    re.IGNORECASE,
)


def reply_fault(content: str | None) -> str:
    """Why a 200 reply is a fault of the transport rather than an answer, or "".

    An empty reply, or one that is an HTTP error page a proxy passed on with status 200, says
    nothing about the question: it is retried like a 5xx and never reaches the parsers, where
    it would count as an unparseable attempt (a strike towards `error`)."""
    text = (content or "").strip()
    if not text:
        return "The server sent an empty reply"
    if len(text) < 2000 and _TRANSPORT_PAGE.match(text):
        return f"The server sent an error page instead of a reply: {_short(text, 120)}"
    return ""


def _count(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def backoff_seconds(try_number: int, retry_after: float | None = None) -> float:
    """Full jitter: uniform in [0, base·2^(n-1)], capped; never sooner than Retry-After."""
    base = float(getattr(settings, "MEDCOT_LLM_BACKOFF_BASE", 1.0))
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** (try_number - 1))
    wait = random.uniform(0, ceiling)
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_BACKOFF_SECONDS * 5))
    return wait


# Errors that say this machine ran out of something (open files, ports, buffers, memory),
# not that the model failed: the try is made again when there is room, and not counted.
_LOCAL_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}
)
# How long a call waits in place for this machine to have room before its job is re-queued.
LOCAL_WAIT_SECONDS = 300.0


def _local_exhaustion(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError | httpx.PoolTimeout):
            return True
        if isinstance(current, OSError) and current.errno in _LOCAL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def _try_once(
    profile: ProfileSnapshot, request: ChatRequest
) -> tuple[ChatReply | None, LLMError | None, float]:
    """One try under the in-flight limit: (reply, None, started) or (None, error, started). A
    try stopped by a local limit waits and is made again; after LOCAL_WAIT_SECONDS the job is
    re-queued (LocalLimitReached), never failed."""
    waited_since: float | None = None
    delay = 0.05
    while True:
        release = _slots_get().acquire(profile)
        started = time.monotonic()
        try:
            return chat_once(profile, request), None, started
        except LLMError as exc:
            if not _local_exhaustion(exc):
                return None, exc, started
            error: LLMError = exc
        except (OSError, MemoryError) as exc:
            if not _local_exhaustion(exc):
                raise
            error = TransientLLMError(str(exc))
        finally:
            release()
        now = time.monotonic()
        waited_since = waited_since if waited_since is not None else now
        if now - waited_since >= LOCAL_WAIT_SECONDS:
            raise LocalLimitReached(
                f"This worker had no room for a call for {now - waited_since:.0f}s: {error}"
            )
        log.warning("No room for a call on this worker (%s); waiting %.2fs", error, delay)
        aio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, 5.0)


def chat(
    profile: ProfileSnapshot,
    request: ChatRequest,
    *,
    on_failure: Callable[[TryRecord], object] | None = None,
    should_continue: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = aio.sleep,
) -> tuple[ChatReply, TryRecord]:
    """Call the model, retrying transient failures. Returns the reply and the record of the
    successful try, which the caller stores together with what it made of the reply (one
    transaction per call instead of two). Failed tries go to `on_failure` as they happen.
    Raises FatalLLMError, PaymentRequired, RetriesExhausted, CallAborted or
    LocalLimitReached (this machine, not the model, had no room: the job is re-queued)."""
    model = request.model or profile.model
    for try_number in range(1, profile.max_retries + 2):
        reply, error, started = _try_once(profile, request)
        if error is None:
            return reply, TryRecord(try_number, "ok", reply.model, reply.latency_ms, 200, "", reply)
        latency_ms = int((time.monotonic() - started) * 1000)
        if on_failure:
            on_failure(
                TryRecord(try_number, error.outcome, model, latency_ms, error.status, str(error))
            )
        if not isinstance(error, TransientLLMError):
            raise error
        if try_number > profile.max_retries:
            raise RetriesExhausted(
                f"Gave up after {try_number} tries: {error}", status=error.status
            ) from error
        wait = backoff_seconds(try_number, error.retry_after)
        log.info(
            "LLM %s try %d failed (%s); retrying in %.1fs", profile.name, try_number, error, wait
        )
        if should_continue is not None and not should_continue():
            raise CallAborted("The run was paused or cancelled")
        sleep(wait)
    raise AssertionError("unreachable")
