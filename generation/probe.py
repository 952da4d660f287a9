"""Test an LLM endpoint with live calls: does it answer, how fast, where does its reasoning go,
and which structured-output mode does it honour.

Three kinds of call, each a tiny request:

1. a question to answer: latency, the reasoning style (`reasoning_content`, `reasoning`,
   `<think>` in the content, or none) and whether the reply can be read;
2. a synthesis request for one question with `response_format: json_schema` (strict, the
   synthesis schema), then with `json_object`: the first whose reply is a JSON object holding a
   valid question is the mode the server honours. A server that ignores a mode answers in
   prose, and one that refuses it answers 400; either way the next is tried, and when neither
   works the mode is `none` (the prompt alone asks for JSON, and every reply is validated).

Failures come back in plain words, saying what to check. Nothing here touches the database;
`generation.services.profile_test` stores the result on the profile.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import httpx
import openai
from django.utils.translation import gettext as _

from generation.client import (
    LLMError,
    PaymentRequired,
    ProfileSnapshot,
    api_key_for,
    classify,
    reply_fault,
)
from generation.parsing import (
    SYNTHESIS_SCHEMA,
    SYNTHESIS_SCHEMA_NAME,
    ReplyFormatError,
    parse_answer,
    parse_synthesized_detailed,
)
from generation.reasoning import split_reasoning

# A probe does not wait as long as a pipeline call: a person is looking at the page.
PROBE_TIMEOUT_SECONDS = 60.0

_QUESTION = (
    "A 67-year-old woman with atrial fibrillation and a mechanical mitral valve needs long-term "
    "anticoagulation. Which drug is indicated?\n\nA. Aspirin\nB. Clopidogrel\nC. Warfarin\n"
    "D. Apixaban\n\nAnswer briefly, then end with: The answer is (X)."
)
_OPTIONS = {"A": "Aspirin", "B": "Clopidogrel", "C": "Warfarin", "D": "Apixaban"}
_SYNTHESIS = (
    "Seed question: " + _QUESTION.split("\n\nAnswer")[0] + "\nCorrect answer: C\n\n"
    "Write 1 NEW multiple-choice question on another aspect of the same concept, with 4 "
    'options, the correct letter and an explanation. Reply with JSON only: {"questions": '
    '[{"stem": "...", "options": ["...", "...", "...", "..."], "answer": "B", "cot": "...", '
    '"aspect": "..."}]}'
)


@dataclass
class ProbeResult:
    ok: bool
    latency_ms: int | None = None
    reasoning_style: str = ""
    structured_output: str = ""
    answer_read: bool = False
    error: str = ""
    # The server's own words, shown beside `error` as they were sent.
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    tested_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return asdict(self)


def _reasoning_style(message: dict) -> str:
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        return "reasoning_content"
    if isinstance(message.get("reasoning"), str) and message["reasoning"]:
        return "reasoning"
    content = message.get("content") or ""
    if "<think" in content:
        return "think tags"
    if "</think>" in content:
        return "think close tag"
    return "none"


def plain_words(error: LLMError, profile: ProfileSnapshot) -> str:
    """What went wrong and what to check, for a person setting the endpoint up, in their
    language; the server's own words go beside it (`ProbeResult.detail`) as it sent them."""
    status = error.status
    said = {"error": error, "status": status}
    if status in {401, 403}:
        where = (
            _("the environment variable %(name)s") % {"name": profile.api_key_env}
            if profile.api_key_env
            else _("no key variable is set on this endpoint")
        )
        return _(
            "The server refused the API key (HTTP %(status)s). Check %(where)s: it must hold a "
            "valid key in the environment of the web server and the workers."
        ) % {**said, "where": where}
    if status == 404:
        return _(
            "The server has no such path or model (HTTP 404). Check the base URL (it usually "
            "ends in /v1) and the model name %(model)r."
        ) % {**said, "model": profile.model}
    if isinstance(error, PaymentRequired):
        return _("The provider's account is out of balance (HTTP 402): top it up.") % said
    if status == 429:
        return _("The server is rate-limiting this key (HTTP 429); try again shortly.") % said
    if status is not None and status >= 500:
        return _("The server failed (HTTP %(status)s); try again, or ask its operator.") % said
    if status is not None:
        return _("The server refused the request (HTTP %(status)s).") % said
    if "timeout" in str(error).lower():
        return _(
            "No answer within %(seconds)d s. The server may be overloaded, or the base URL may "
            "point at something that never answers."
        ) % {**said, "seconds": PROBE_TIMEOUT_SECONDS}
    if "connect" in str(error).lower():
        return _("Could not reach %(url)s. Is the server running, and is the base URL right?") % {
            **said,
            "url": profile.base_url,
        }
    return _("The request failed.")


class _Prober:
    def __init__(self, profile: ProfileSnapshot) -> None:
        self.profile = profile
        self.client = openai.OpenAI(
            base_url=profile.base_url,
            api_key=api_key_for(profile),
            max_retries=0,
            timeout=openai.Timeout(min(profile.timeout_seconds, PROBE_TIMEOUT_SECONDS), connect=10),
        )

    def close(self) -> None:
        self.client.close()

    def post(self, *, task: str, prompt: str, extra: dict | None = None, sim: dict | None = None):
        """One request; returns (message dict, latency ms). Raises LLMError."""
        body: dict = {
            "model": self.profile.model,
            "messages": [{"role": "user", "content": prompt}],
            **(extra or {}),
        }
        if self.profile.max_tokens:
            body["max_tokens"] = self.profile.max_tokens
        headers: dict[str, str] = {}
        if self.profile.simulated:
            headers["X-MedCoT-Task"] = task
            headers.update({f"X-MedCoT-Sim-{k}": v for k, v in (sim or {}).items()})
        started = time.monotonic()
        try:
            response = self.client.post(
                "/chat/completions",
                body=body,
                cast_to=httpx.Response,
                options={"headers": headers} if headers else {},
            )
            completion = response.json()
        except (openai.OpenAIError, ValueError) as exc:
            raise classify(exc) from exc
        latency_ms = int((time.monotonic() - started) * 1000)
        choices = completion.get("choices") if isinstance(completion, dict) else None
        message = choices[0].get("message") if isinstance(choices, list) and choices else None
        if not isinstance(message, dict):
            raise LLMError("The server answered 200 without a message (not a chat completion)")
        return message, latency_ms

    def structured_mode(self) -> tuple[str, list[str]]:
        """The first mode whose reply is a JSON object with a valid question, and notes on
        the modes that failed."""
        notes = []
        formats = {
            "json_schema": {
                "type": "json_schema",
                "json_schema": {
                    "name": SYNTHESIS_SCHEMA_NAME,
                    "strict": True,
                    "schema": SYNTHESIS_SCHEMA,
                },
            },
            "json_object": {"type": "json_object"},
        }
        for mode, response_format in formats.items():
            try:
                message, _latency = self.post(
                    task="synthesize",
                    prompt=_SYNTHESIS,
                    extra={"response_format": response_format},
                    sim={"Count": "1"},
                )
            except LLMError as exc:
                notes.append(
                    _("%(mode)s: %(problem)s")
                    % {"mode": mode, "problem": plain_words(exc, self.profile)}
                )
                continue
            content, _reasoning = split_reasoning(message)
            text = (content or "").strip()
            try:
                if not text.startswith("{"):
                    raise ReplyFormatError(_("the reply is not a JSON object"))
                json.loads(text)
                parse_synthesized_detailed(text)
            except (ValueError, ReplyFormatError) as exc:
                # The parser's reason is technical (and English): shown as it is, after a
                # sentence in the reader's language.
                notes.append(
                    _("%(mode)s: the server ignored it (%(reason)s)")
                    % {"mode": mode, "reason": exc}
                )
                continue
            return mode, notes
        return "none", notes


def endpoint_probe(profile: ProfileSnapshot) -> ProbeResult:
    """Live calls to the endpoint; see the module docstring."""
    result = ProbeResult(ok=False)
    if profile.api_key_env and not os.environ.get(profile.api_key_env):
        result.notes.append(
            _(
                "The environment variable %(name)s is not set where the web server runs; the "
                "call goes without a key."
            )
            % {"name": profile.api_key_env}
        )
    prober = _Prober(profile)
    try:
        try:
            message, latency_ms = prober.post(
                task="cot", prompt=_QUESTION, extra={}, sim={"Key": "C"}
            )
        except LLMError as exc:
            result.error = plain_words(exc, profile)
            result.detail = str(exc)[:500]
            return result
        result.latency_ms = latency_ms
        result.reasoning_style = _reasoning_style(message)
        content, _reasoning = split_reasoning(message)
        if reply_fault(content):
            # reply_fault's words are for the logs (English); the person reads them in their
            # language, and the page the server sent goes beside them as it was.
            text = (content or "").strip()
            fault = (
                _("The server sent an error page instead of a reply")
                if text
                else _("The server sent an empty reply")
            )
            result.error = _(
                "%(fault)s. The server answered, but with nothing a model would write."
            ) % {"fault": fault}
            result.detail = text[:500]
            return result
        result.answer_read = parse_answer(content, _OPTIONS).ok
        if not result.answer_read:
            result.notes.append(_("The test answer could not be read; check the model's replies."))
        result.structured_output, notes = prober.structured_mode()
        result.notes.extend(notes)
        result.ok = True
        return result
    finally:
        prober.close()
