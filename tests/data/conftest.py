"""Loaders cache what they read; in these tests the cache is a fresh folder per test session."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MTL_CACHE_DIR", str(tmp_path_factory.mktemp("mtl_cache")))
    yield
    mp.undo()
