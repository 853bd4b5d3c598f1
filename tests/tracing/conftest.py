"""Tracing tests: an in-memory span exporter, configured per test and turned off afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:  # the `tracing` extra is not installed
    if os.environ.get("JUNCTION_REQUIRE_TRACING") == "1":
        raise
    # said in the test summary, not silent: see test_extra.py
    collect_ignore = [
        p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_extra.py"
    ]

from junction.core import tracing
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from tests.fakes.kafka_broker import kafka_broker  # noqa: F401 - the session broker fixture
from tests.integration.test_alert_hygiene import Sink


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


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    """A local webhook receiver that verifies signatures and journals every request."""
    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl") as s:
        yield Sink(s.url, secret, tmp_path / "sink.jsonl")
