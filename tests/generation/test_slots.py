"""The Redis in-flight limiter: it rides out a Redis restart instead of failing the call, holds
the limit across processes, and waiting for a place costs no connection, in threads or in the
asyncio pool's greenlets."""

import threading
import time

import pytest
import redis

from generation import aio
from generation.client import ProfileSnapshot, SlotsUnavailable, _LocalSlots, _RedisSlots
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
        assert slots.flush(5)
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


def test_a_release_while_redis_is_down_is_sent_when_it_is_back(tmp_path):
    server = RedisServer(tmp_path, durable=True).start()
    try:
        slots = _RedisSlots(server.url, outage_seconds=5)
        release = slots.acquire(_profile())
        server.stop()
        release()  # the call must not fail for it, nor wait
        assert not slots.flush(1.0)  # not sent yet: Redis is down
        server.start()
        # Kept and given back once Redis is reachable, not left to expire with the lease.
        assert slots.flush(15)
        assert redis.Redis(port=server.port).zcard("medcot:llm:inflight:4242") == 0
        slots.close()
    finally:
        server.stop()


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
        # Releases reach Redis in batches, on a thread of each limiter.
        assert all(limiter.flush(5) for limiter in limiters)
        assert redis.Redis(port=server.port).zcard("medcot:llm:inflight:4242") == 0
    finally:
        server.stop()


def _connections(port: int) -> int:
    return len(redis.Redis(port=port).client_list()) - 1  # less the one asking


def test_waiting_for_a_place_holds_no_connection_per_waiter(tmp_path):
    """400 threads wait on a limit of 2: the limiter's connections stay a handful (redis-py's
    pool of 100 per process had run out at C = 1,024 and failed the calls)."""
    server = RedisServer(tmp_path).start()
    try:
        slots = _RedisSlots(server.url)
        profile = _profile(max_in_flight=2)
        held = [slots.acquire(profile), slots.acquire(profile)]
        done = []
        lock = threading.Lock()

        def call():
            release = slots.acquire(profile)
            with lock:
                done.append(1)
            release()

        threads = [threading.Thread(target=call) for _ in range(400)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert not done  # all of them wait
        assert _connections(server.port) <= 4
        for release in held:
            release()
        for thread in threads:
            thread.join(timeout=60)
        assert len(done) == 400
        assert slots.flush(5)
        assert redis.Redis(port=server.port).zcard("medcot:llm:inflight:4242") == 0
        slots.close()
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_greenlets_on_the_loop_wait_for_places_without_a_thread_each(tmp_path, kind):
    """2,000 jobs on the asyncio pool's loop share a limit of 8: never more than 8 hold a
    place, all finish, no lease is left, and the process gained no thread per job."""
    server = RedisServer(tmp_path).start() if kind == "redis" else None
    try:
        slots = _RedisSlots(server.url) if server else _LocalSlots()
        profile = _profile(max_in_flight=8)
        state = {"now": 0, "peak": 0}
        threads_before = threading.active_count()

        def job():
            release = slots.acquire(profile)
            state["now"] += 1  # one loop thread: no lock needed
            state["peak"] = max(state["peak"], state["now"])
            aio.sleep(0.005)
            state["now"] -= 1
            release()
            return threading.active_count()

        futures = [aio.submit(job) for _ in range(2000)]
        counts = [future.result(timeout=120) for future in futures]
        assert state["peak"] == 8
        # The loop's thread and the limiter's two, not one per job.
        assert max(counts) <= threads_before + 3
        if server:
            assert slots.flush(5)
            assert redis.Redis(port=server.port).zcard("medcot:llm:inflight:4242") == 0
            slots.close()
    finally:
        if server:
            server.stop()


def test_a_released_place_passes_to_a_waiter_in_the_same_process(tmp_path, monkeypatch):
    """A place freed while a call of the same process waits goes straight to it: the lease
    stays in Redis under its name (renewed once old), and Redis never sees a free place."""
    server = RedisServer(tmp_path).start()
    try:
        conn = redis.Redis(port=server.port)
        key = "medcot:llm:inflight:4242"
        slots = _RedisSlots(server.url, outage_seconds=30)
        first = slots.acquire(_profile(max_in_flight=1))
        (token,) = conn.zrange(key, 0, -1)
        taken = conn.zscore(key, token)
        got: dict = {}
        waiter = threading.Thread(target=lambda: got.update(release=slots.acquire(_profile(1))))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # no place: it waits
        # Handed on 20 s after it was taken, past a third of its life (timeout + 30 s): it is
        # renewed.
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 20)
        first()
        monkeypatch.undo()
        waiter.join(timeout=5)
        assert not waiter.is_alive()
        assert conn.zrange(key, 0, -1) == [token]
        assert slots.flush(5)
        assert conn.zscore(key, token) >= taken + 20, "the handed-on lease was not renewed"
        assert not conn.exists(f"{key}:wake")  # nobody was woken through Redis
        got["release"]()
        assert slots.flush(5)
        assert conn.zcard(key) == 0
    finally:
        server.stop()


def test_a_lower_limit_is_not_handed_a_place_of_the_higher_one(tmp_path):
    """A profile edited to a lower limit mid-run: a freed place of the old limit goes back to
    Redis, which admits the waiter only under the new limit."""
    server = RedisServer(tmp_path).start()
    try:
        conn = redis.Redis(port=server.port)
        key = "medcot:llm:inflight:4242"
        slots = _RedisSlots(server.url, outage_seconds=30)
        old = [slots.acquire(_profile(max_in_flight=2)) for _ in range(2)]
        got: dict = {}
        waiter = threading.Thread(target=lambda: got.update(release=slots.acquire(_profile(1))))
        waiter.start()
        old[0]()
        time.sleep(0.6)
        assert waiter.is_alive(), "a place of the old limit of 2 was handed to a call under 1"
        old[1]()
        waiter.join(timeout=5)
        assert not waiter.is_alive()
        assert conn.zcard(key) == 1
        got["release"]()
        assert slots.flush(5)
        assert conn.zcard(key) == 0
    finally:
        server.stop()
