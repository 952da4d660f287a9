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
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import openai
from django.conf import settings

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
_clients_lock = threading.Lock()


def api_key_for(profile: ProfileSnapshot) -> str:
    """The key from the environment variable the profile names. Servers without auth (vLLM,
    Ollama, the simulator) still need a non-empty string for the SDK."""
    if profile.api_key_env:
        return os.environ.get(profile.api_key_env, "") or "not-needed"
    return "not-needed"


def client_for(profile: ProfileSnapshot) -> openai.OpenAI:
    key = (profile.base_url, profile.api_key_env, profile.timeout_seconds, profile.max_in_flight)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = openai.OpenAI(
                base_url=profile.base_url,
                api_key=api_key_for(profile),
                # One retry layer: ours.
                max_retries=0,
                # Reasoning models take minutes; a slow reply is normal, a dead socket is not.
                timeout=openai.Timeout(profile.timeout_seconds, connect=15.0),
            )
            _clients[key] = client
        return client


def clients_reset() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# -- in-flight limit ------------------------------------------------------------------------


class _LocalSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sems: dict[tuple[int, int], threading.BoundedSemaphore] = {}

    def acquire(self, profile: ProfileSnapshot) -> Callable[[], None]:
        with self._lock:
            key = (profile.id, profile.max_in_flight)
            sem = self._sems.setdefault(key, threading.BoundedSemaphore(profile.max_in_flight))
        sem.acquire()
        return sem.release


class SlotsUnavailable(Exception):
    """The in-flight limiter's Redis stayed unreachable for longer than its grace period."""


# Take a lease when fewer than the limit are held, in one atomic step: with separate ZADD and
# ZRANK calls, two workers whose clocks (scores) disagree could both see a free place.
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# Give a lease back and wake one waiter, in whichever process it is. The wake list is kept
# short and expires, so wake-ups nobody waited for do not pile up.
_RELEASE_LUA = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], 1)
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('EXPIRE', KEYS[2], 60)
end
return 0
"""


class _RedisSlots:
    """A counting semaphore shared by every worker process: a sorted set of leases scored by
    their start time. A lease older than the call timeout belongs to a worker that died and
    is swept, so a killed worker cannot leak capacity for ever.

    A thread that finds every place taken blocks on a wake list (BLPOP) that each release
    pushes to, so a freed place is taken within a round trip and waiting costs no polling;
    the short block timeout covers leases freed by expiry instead of by a release.

    Redis going away for a moment (a restart, a failover) is not a reason to fail a call:
    connection and timeout errors are retried with capped backoff for up to `outage_seconds`
    before `SlotsUnavailable` is raised."""

    WAIT_SECONDS = 0.25

    def __init__(self, url: str, *, outage_seconds: float | None = None) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self._take = self._redis.register_script(_ACQUIRE_LUA)
        self._give = self._redis.register_script(_RELEASE_LUA)
        self._transient = (redis.ConnectionError, redis.TimeoutError)
        if outage_seconds is None:
            outage_seconds = float(getattr(settings, "MEDCOT_LLM_SLOTS_OUTAGE_SECONDS", 60.0))
        self.outage_seconds = outage_seconds

    def acquire(self, profile: ProfileSnapshot) -> Callable[[], None]:
        key = f"medcot:llm:inflight:{profile.id}"
        wake = f"{key}:wake"
        token = uuid.uuid4().hex
        # A slot is held for one HTTP try, which the client's timeout bounds.
        lease = profile.timeout_seconds + 30
        outage_started: float | None = None
        outage_delay = 0.1
        while True:
            now = time.time()
            try:
                args = [now - lease, profile.max_in_flight, now, token]
                taken = self._take(keys=[key], args=args)
                if outage_started is not None:
                    log.info("In-flight limiter reached Redis again")
                    outage_started, outage_delay = None, 0.1
                if taken:
                    return lambda: self._release(key, wake, token, profile.max_in_flight)
                self._redis.blpop([wake], timeout=self.WAIT_SECONDS)
            except self._transient as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                    log.warning("In-flight limiter lost Redis (%s); waiting for it", exc)
                elapsed = time.monotonic() - outage_started
                if elapsed >= self.outage_seconds:
                    raise SlotsUnavailable(
                        f"The in-flight limiter's Redis was unreachable for {elapsed:.0f}s: {exc}"
                    ) from exc
                wait = min(outage_delay, self.outage_seconds - elapsed)
                time.sleep(wait * (0.5 + random.random() / 2))
                outage_delay = min(outage_delay * 2, 5.0)

    def _release(self, key: str, wake: str, token: str, limit: int) -> None:
        # A lease that cannot be removed now is swept once it is older than the call timeout,
        # so losing Redis at release time costs capacity for a while, never correctness.
        try:
            self._give(keys=[key, wake], args=[token, limit])
        except self._transient as exc:
            log.warning("Could not release an in-flight lease (%s); it will expire", exc)


_slots: _LocalSlots | _RedisSlots | None = None


def _slots_get() -> _LocalSlots | _RedisSlots:
    global _slots
    if _slots is None:
        url = getattr(settings, "CELERY_BROKER_URL", "")
        _slots = _RedisSlots(url) if url.startswith(("redis://", "rediss://")) else _LocalSlots()
    return _slots


def slots_reset() -> None:
    global _slots
    _slots = None


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


def chat(
    profile: ProfileSnapshot,
    request: ChatRequest,
    *,
    on_failure: Callable[[TryRecord], object] | None = None,
    should_continue: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ChatReply, TryRecord]:
    """Call the model, retrying transient failures. Returns the reply and the record of the
    successful try, which the caller stores together with what it made of the reply (one
    transaction per call instead of two). Failed tries go to `on_failure` as they happen.
    Raises FatalLLMError, PaymentRequired, RetriesExhausted or CallAborted."""
    model = request.model or profile.model
    for try_number in range(1, profile.max_retries + 2):
        release = _slots_get().acquire(profile)
        started = time.monotonic()
        try:
            reply = chat_once(profile, request)
        except LLMError as exc:
            error = exc
        else:
            error = None
        finally:
            release()
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
