"""The client against the simulator over real HTTP: one retry layer, and each fault class
handled as it should be."""

import pytest

from generation import client
from generation.client import (
    ChatRequest,
    FatalLLMError,
    PaymentRequired,
    ProfileSnapshot,
    RetriesExhausted,
    chat,
)
from tests.generation.conftest import make_profile

QUESTION = (
    "A 54-year-old man has crushing chest pain for 40 minutes. Next step?\n\n"
    "A. Aspirin and ECG\nB. Discharge home\nC. Abdominal ultrasound\nD. Antacid trial"
)


def _request(task="reanswer", key="A"):
    return ChatRequest(
        task=task, messages=[{"role": "user", "content": QUESTION}], sim_facts={"Key": key}
    )


def _snapshot(sim, **fields):
    return ProfileSnapshot.of(make_profile(sim.base_url, **fields))


def _collect():
    failures, waits = [], []
    return failures, waits, failures.append, waits.append


def test_it_builds_the_sdk_client_without_its_own_retries(db, simulator):
    profile = _snapshot(simulator)
    assert client.client_for(profile).max_retries == 0


def test_it_returns_the_reply_and_the_reasoning_trace(db, start_simulator):
    sim = start_simulator(reasoning="deepseek")
    reply, record = chat(_snapshot(sim), _request())
    assert "[simulated]" in reply.content
    assert reply.reasoning
    assert record.outcome == "ok" and record.try_number == 1
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0


def test_it_takes_think_tags_out_of_the_content(db, start_simulator):
    sim = start_simulator(reasoning="think")
    reply, _ = chat(_snapshot(sim), _request())
    assert "<think>" not in reply.content and "</think>" not in reply.content
    assert reply.reasoning


def test_it_retries_server_errors_until_one_succeeds(db, start_simulator):
    sim = start_simulator(rate_500=0.5, seed=11)
    profile = _snapshot(sim, max_retries=8)
    failures, waits, on_failure, sleep = _collect()
    for n in range(12):
        _reply, record = chat(
            profile, _request(key="ABCD"[n % 4]), on_failure=on_failure, sleep=sleep
        )
        assert record.outcome == "ok"
    assert failures, "with half the requests failing, some call must have been retried"
    assert {f.http_status for f in failures} == {500}
    assert all(f.outcome == "transient" for f in failures)
    assert len(waits) == len(failures)


def test_it_gives_up_after_the_profiles_retries(db, start_simulator):
    sim = start_simulator(rate_500=1.0)
    failures, waits, on_failure, sleep = _collect()
    with pytest.raises(RetriesExhausted, match="Gave up after 3 tries"):
        chat(_snapshot(sim, max_retries=2), _request(), on_failure=on_failure, sleep=sleep)
    assert [f.try_number for f in failures] == [1, 2, 3]
    assert len(waits) == 2


def test_it_honours_retry_after_on_429(db, start_simulator):
    sim = start_simulator(rate_429=1.0, retry_after=2)
    failures, waits, on_failure, sleep = _collect()
    with pytest.raises(RetriesExhausted):
        chat(_snapshot(sim, max_retries=2), _request(), on_failure=on_failure, sleep=sleep)
    assert {f.http_status for f in failures} == {429}
    # Backoff alone would be a few milliseconds here (base 0.01 s); Retry-After says 2 s.
    assert waits and all(wait >= 2.0 for wait in waits)


def test_it_retries_a_timeout(db, start_simulator):
    sim = start_simulator(rate_timeout=1.0, timeout_hold=3.0)
    failures, _waits, on_failure, sleep = _collect()
    with pytest.raises(RetriesExhausted, match="timeout"):
        chat(
            _snapshot(sim, max_retries=1, timeout_seconds=0.3),
            _request(),
            on_failure=on_failure,
            sleep=sleep,
        )
    assert [f.outcome for f in failures] == ["transient", "transient"]


def test_it_retries_a_refused_connection(db):
    profile = ProfileSnapshot.of(make_profile("http://127.0.0.1:9/v1", max_retries=1))
    failures, _waits, on_failure, sleep = _collect()
    with pytest.raises(RetriesExhausted, match="connect"):
        chat(profile, _request(), on_failure=on_failure, sleep=sleep)
    assert len(failures) == 2


def test_it_does_not_retry_a_402_and_says_the_account_is_out_of_balance(db, start_simulator):
    sim = start_simulator(rate_402=1.0)
    failures, waits, on_failure, sleep = _collect()
    with pytest.raises(PaymentRequired, match="402"):
        chat(_snapshot(sim), _request(), on_failure=on_failure, sleep=sleep)
    assert len(failures) == 1 and failures[0].outcome == "payment"
    assert waits == []


def test_it_does_not_retry_a_401(db, start_simulator):
    sim = start_simulator(api_key="right-key")
    failures, waits, on_failure, sleep = _collect()
    with pytest.raises(FatalLLMError, match="401"):
        chat(_snapshot(sim), _request(), on_failure=on_failure, sleep=sleep)
    assert len(failures) == 1 and waits == []


def test_it_does_not_retry_a_400(db, simulator):
    failures, waits, on_failure, sleep = _collect()
    with pytest.raises(FatalLLMError, match="400"):
        chat(
            _snapshot(simulator),
            ChatRequest(task="reanswer", messages=[]),
            on_failure=on_failure,
            sleep=sleep,
        )
    assert len(failures) == 1 and waits == []


def test_it_reads_the_key_from_the_environment_variable_the_profile_names(
    db, start_simulator, monkeypatch
):
    sim = start_simulator(api_key="s3cret-value")
    monkeypatch.setenv("GEN_TEST_LLM_KEY", "s3cret-value")
    reply, _ = chat(_snapshot(sim, api_key_env="GEN_TEST_LLM_KEY"), _request())
    assert reply.content


def test_it_tells_only_simulated_profiles_the_answer_key(db, start_simulator):
    sim = start_simulator()
    chat(_snapshot(sim, simulated=True), _request(task="reanswer"))
    assert sim.stats()["tasks"] == {"reanswer": 1}
    # A real endpoint gets no X-MedCoT headers, so the simulator falls back to its default.
    chat(_snapshot(sim, simulated=False, name="real", is_default=False), _request(task="reanswer"))
    assert sim.stats()["tasks"] == {"reanswer": 1, "cot": 1}


def test_backoff_grows_and_is_jittered(settings):
    settings.MEDCOT_LLM_BACKOFF_BASE = 1.0
    waits = [client.backoff_seconds(5) for _ in range(200)]
    assert all(0 <= w <= 16 for w in waits)
    assert len({round(w, 3) for w in waits}) > 100
    assert all(client.backoff_seconds(30) <= client.MAX_BACKOFF_SECONDS for _ in range(50))
