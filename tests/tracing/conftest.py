"""Tracing tests: an in-memory span exporter, configured per test and turned off afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from junction.core import tracing
from tests.fakes.kafka_broker import kafka_broker  # noqa: F401 - the session broker fixture


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory (exported as it ends)."""
    exporter = InMemorySpanExporter()
    tracing.configure(span_exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """Tracing off (the default), and still off afterwards."""
    tracing.shutdown()
    yield
    tracing.shutdown()
