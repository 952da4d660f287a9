"""The Redis in-flight limiter rides out a Redis restart instead of failing the call."""

import threading
import time

import pytest
import redis

from generation.client import ProfileSnapshot, SlotsUnavailable, _RedisSlots
from tests.redis_server import RedisServer, free_port, needs_redis_server

pytestmark = needs_redis_server


def _profile(max_in_flight: int = 2) -> ProfileSnapshot:
    return ProfileSnapshot(
        id=4242,
        name="slots-test",
        base_url="http://127.0.0.1:1/v1",
        model="m",
        api_key_env="",
        max_in_flight=max_in_flight,
        timeout_seconds=5.0,
        max_retries=0,
        temperature=None,
        top_p=None,
        max_tokens=None,
        structured_output="none",
        price_input_per_m=0,
        price_output_per_m=0,
        simulated=True,
    )


def test_it_waits_for_redis_to_come_back_during_a_restart(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        slots = _RedisSlots(server.url, outage_seconds=30)
        slots.acquire(_profile())()  # the limiter works while Redis is up

        server.stop()
        result: dict = {}

        def take():
            try:
                result["release"] = slots.acquire(_profile())
            except Exception as exc:
                result["error"] = exc

        worker = threading.Thread(target=take)
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive(), f"acquire gave up while Redis was down: {result}"

        server.start()
        worker.join(timeout=20)
        assert not worker.is_alive()
        assert "error" not in result, result.get("error")

        conn = redis.Redis(port=server.port)
        assert conn.zcard("medcot:llm:inflight:4242") == 1
        result["release"]()
        assert conn.zcard("medcot:llm:inflight:4242") == 0
    finally:
        server.stop()


def test_it_gives_up_after_the_outage_grace_period():
    port = free_port()  # nothing listens here
    slots = _RedisSlots(f"redis://127.0.0.1:{port}/0", outage_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(SlotsUnavailable, match="unreachable"):
        slots.acquire(_profile())
    assert 0.9 <= time.monotonic() - started < 10


def test_a_release_while_redis_is_down_does_not_raise(tmp_path):
    server = RedisServer(tmp_path).start()
    slots = _RedisSlots(server.url, outage_seconds=5)
    release = slots.acquire(_profile())
    server.stop()
    release()  # the lease would expire on its own; the call must not fail for it


def test_never_more_than_the_limit_are_in_flight_across_processes(tmp_path):
    """Two limiters (as two worker processes would have), 24 threads, a limit of 3."""
    server = RedisServer(tmp_path).start()
    try:
        limiters = [_RedisSlots(server.url), _RedisSlots(server.url)]
        lock = threading.Lock()
        state = {"now": 0, "peak": 0, "done": 0}

        def call(limiter):
            for _ in range(5):
                release = limiter.acquire(_profile(max_in_flight=3))
                with lock:
                    state["now"] += 1
                    state["peak"] = max(state["peak"], state["now"])
                time.sleep(0.01)
                with lock:
                    state["now"] -= 1
                    state["done"] += 1
                release()

        threads = [threading.Thread(target=call, args=(limiters[i % 2],)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert state["done"] == 24 * 5
        assert state["peak"] == 3
        assert redis.Redis(port=server.port).zcard("medcot:llm:inflight:4242") == 0
    finally:
        server.stop()
