import pytest

from generation import client, prompts
from generation.models import LLMProfile
from llmsim.server import run_in_thread


@pytest.fixture(autouse=True)
def _fresh_generation_state(settings, eager_celery):
    """Per-test: tiny backoff, eager Celery, and no cached prompt ids or HTTP clients from a
    previous test's (rolled back) database."""
    settings.MEDCOT_LLM_BACKOFF_BASE = 0.01
    settings.CELERY_BROKER_URL = "memory://"
    prompts.prompt_cache_clear()
    client.clients_reset()
    client.slots_reset()
    yield
    client.clients_reset()
    client.slots_reset()


@pytest.fixture(scope="session")
def simulator():
    """A real simulated OpenAI-compatible server on a free port, answering instantly and
    always correctly unless a test starts its own with other settings."""
    handle = run_in_thread(port=0, latency_mean=0.0, accuracy=1.0, seed=7)
    yield handle
    handle.stop()


def make_profile(base_url: str, **fields) -> LLMProfile:
    values = {
        "name": "sim",
        "base_url": base_url,
        "model": "sim-medcot",
        "simulated": True,
        "is_default": True,
        "max_in_flight": 8,
        "timeout_seconds": 5.0,
        "max_retries": 3,
    }
    values.update(fields)
    return LLMProfile.objects.create(**values)


@pytest.fixture
def sim_profile(db, simulator):
    return make_profile(simulator.base_url)


@pytest.fixture
def start_simulator():
    """Start simulators with particular faults for one test; all are stopped afterwards."""
    handles = []

    def start(**config):
        config = {"port": 0, "latency_mean": 0.0, "accuracy": 1.0, "seed": 3, **config}
        handle = run_in_thread(**config)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()
