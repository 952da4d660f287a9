# The generation app's fixtures, for the fault tests that drive real workers: simulators, and
# Celery publishing to the test Redis with no worker consuming.
from tests.generation.conftest import start_simulator  # noqa: F401
from tests.generation.test_dispatch_sweep import redis_broker  # noqa: F401
