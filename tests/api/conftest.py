"""Fixtures: a real API server per test on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.harness import ApiHarness, running_api, write_api_config


@pytest.fixture
def api(tmp_path: Path, store_url: str, models_dir: Path) -> Iterator[ApiHarness]:
    """The API on both store backends."""
    with running_api(write_api_config(tmp_path, store=store_url, models=models_dir)) as h:
        yield h


@pytest.fixture
def api_sqlite(tmp_path: Path, models_dir: Path) -> Iterator[ApiHarness]:
    """The API on SQLite only (for tests that are about HTTP, not the store)."""
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    with running_api(write_api_config(tmp_path, store=store, models=models_dir)) as h:
        yield h
