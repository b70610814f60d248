import os
import tempfile

# One CPU device (the mesh tests ask for four in a subprocess); the fusion emitters off halves
# XLA:CPU compile times of the solvers' while loops.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1 --xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests are dominated by XLA compile time (many small programs): compile with most
# optimisations off (4-6x faster compiles here). Subprocesses inherit it. Speed is
# measured by benchmarks/, never by tests.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Identical programs compiled again (a second fit of the same model, a CLI subprocess) come
# from a persistent cache shared by the test processes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"mtl-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pathlib

import pytest
from hypothesis import settings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir():
    """Where the real public data lives: $MTL_DATA_DIR, else ../shared/data."""
    env = os.environ.get("MTL_DATA_DIR")
    if env:
        return pathlib.Path(env)
    return ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir():
    d = shared_data_dir()
    if not d.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the shared data at {d}")
        pytest.skip(f"real data not found at {d}; set MTL_DATA_DIR to a folder laid out like ../shared/data")
    return d

# Property tests draw the same examples on every run (no flaky CI).
settings.register_profile("mtl", derandomize=True, deadline=None)
settings.load_profile("mtl")
