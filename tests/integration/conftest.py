"""Fixtures shared by the integration tests: an open store, its suppression list, and the local
SendGrid fake with the key pair that signs its events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from junction.core.pseudonym import Pseudonymizer
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from tests.fakes.sendgrid import SendGridFake, served_fake
from tests.fakes.sendgrid_events import EventSigner


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


@pytest.fixture
def fake() -> Iterator[SendGridFake]:
    """The SendGrid fake, served on 127.0.0.1."""
    with served_fake() as server:
        yield server


@pytest.fixture
def signer() -> EventSigner:
    """A fresh key pair that signs SendGrid event webhook bodies."""
    return EventSigner()
