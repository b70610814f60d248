import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import pytest

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

from hypothesis import settings

# Property tests draw the same examples on every run (no flaky CI).
settings.register_profile("mtl", derandomize=True, deadline=None)
settings.load_profile("mtl")
