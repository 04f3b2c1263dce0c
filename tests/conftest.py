"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty sizeup cache folder for the test (both catalog caches forgotten before and after)."""
    from sizeup.catalog import catalog_cache, core_cache

    folder = tmp_path / "cache" / "sizeup"
    monkeypatch.setenv("SIZEUP_CACHE_DIR", str(folder))
    monkeypatch.delenv("SIZEUP_NO_CACHE", raising=False)
    catalog_cache.reset()
    core_cache.reset()
    yield folder
    catalog_cache.reset()
    core_cache.reset()
