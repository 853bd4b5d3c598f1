"""Fixtures shared by the integration tests: an open store and its suppression list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from junction.core.pseudonym import Pseudonymizer
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The test's store (SQLite or PostgreSQL, as ``store_url`` says), closed after the test."""
    s = Store.open(store_url)
    yield s
    s.close()


@pytest.fixture
def suppressions(store: Store) -> SuppressionList:
    """The store's suppression list under a fixed test pseudonym key."""
    return SuppressionList(store, Pseudonymizer(b"k" * 32))
