"""A stage worker's asynchronous offset commits (ADR-0032): how a failed one is reported.

The commits themselves run against the real broker in ``tests/stages/test_stage_flow.py``;
this checks the consumer's ``on_commit`` callback, which librdkafka calls with the result.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from junction.pipeline.stages import bus


class _Log:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.seen.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.seen.append(("warning", event, kw))


def test_a_failed_asynchronous_commit_is_logged_as_expected_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _Log()
    monkeypatch.setattr(bus, "log", log)
    parts = [TopicPartition("junction.canonical.lead.v1", 0, 500)]
    bus._on_commit(None, parts)  # done
    bus._on_commit(KafkaError(KafkaError._NO_OFFSET), parts)  # nothing to commit
    assert log.seen == []
    # a rebalance under the commit is routine; a broker that fails it is worth a warning
    bus._on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), parts)
    bus._on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), parts)
    bus._on_commit(KafkaError(KafkaError._TRANSPORT), parts)
    assert [(level, kw["kafka_error"], kw["partitions"]) for level, _, kw in log.seen] == [
        ("info", "REBALANCE_IN_PROGRESS", 1),
        ("info", "ILLEGAL_GENERATION", 1),
        ("warning", "_TRANSPORT", 1),
    ]
    assert all("read again" in event for _, event, _ in log.seen)
