# The generation app's simulator fixtures, for the fault tests that drive real workers.
from tests.generation.conftest import start_simulator  # noqa: F401
