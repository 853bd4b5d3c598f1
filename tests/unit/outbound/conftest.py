"""Fixtures for the outbound channel tests: the session's Kafka broker (tansu on 127.0.0.1)."""

from __future__ import annotations

from tests.fakes.kafka_broker import kafka_broker

__all__ = ["kafka_broker"]
