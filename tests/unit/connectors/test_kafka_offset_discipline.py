"""Offset discipline on a real tansu broker: a poll is never taken for done work.

RELIABILITY case 52.  The contrast first: a consumer with librdkafka's defaults (auto commit,
auto offset store) has committed what it merely polled once its commit interval passes, so a
crash of its slow handler would lose those messages.  Then the guard: the ``kafka`` source and
the stage workers' consumers poll the same way, hold the messages unacknowledged past that
interval, and the group has still committed nothing, even when a stage bus's ``options`` ask
for auto commit.  Restoring the naive settings in either client makes this test fail.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from connectors.kafka import KafkaSourceConnector
from connectors.kafka.config import KafkaConfig
from junction.pipeline.config import BusConfig
from junction.pipeline.stages.bus import make_consumer
from tests.fakes.kafka_broker import kafka_broker
from tests.unit.connectors.test_kafka_source import _lead, _produce, _topic

__all__ = ["kafka_broker"]

MESSAGES = 12
# librdkafka's auto.commit.interval.ms default is 5,000: holding polled messages for longer shows
# whether anything commits them on a timer (the contrast sets a short interval of its own)
HOLD_S = 5.5


def _poll_all(consumer: Consumer, n: int, timeout_s: float = 30.0) -> list[Message]:
    """Poll until ``n`` messages arrived; handle none of them."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} messages arrived"
        got += [m for m in consumer.consume(n - len(got), 0.5) if m.error() is None]
    return got


def _no_callback(consumer: Any, partitions: list[TopicPartition]) -> None:
    return None


def test_polled_messages_are_committed_only_after_their_effect(kafka_broker: Any) -> None:
    naive_topic, source_topic, stage_topic = (_topic(kafka_broker) for _ in range(3))
    for topic in (naive_topic, source_topic, stage_topic):
        _produce(kafka_broker, topic, [_lead(i) for i in range(MESSAGES)])
    naive_group, source_group, stage_group = (f"g-{uuid.uuid4().hex[:8]}" for _ in range(3))

    # (ii) the contrast: librdkafka's defaults with a slow handler that has handled nothing yet
    naive = Consumer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "group.id": naive_group,
            "auto.offset.reset": "earliest",
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": 6000,  # a fresh group's join waits half of it on tansu
        }
    )
    naive.subscribe([naive_topic])
    # (i) ours: the source connector reads its first batch and the runner never acknowledges it
    source = KafkaSourceConnector(
        KafkaConfig.model_validate(
            {
                "bootstrap_servers": kafka_broker.bootstrap,
                "topics": [source_topic],
                "group_id": source_group,
                "batch_size": 5,
                "session_timeout_ms": 2000,
                "poll_timeout_s": 0.1,
            }
        )
    )
    # ... and a stage worker's consumer, whose bus options ask for the naive settings in vain
    bus = BusConfig.model_validate(
        {
            "bootstrap_servers": kafka_broker.bootstrap,
            "options": {
                "enable.auto.commit": True,
                "enable.auto.offset.store": True,
                "session.timeout.ms": 6000,
            },
        }
    )
    stage = make_consumer(bus, stage_group, _no_callback, _no_callback, [stage_topic])
    batches = source.read(source_topic, None)
    try:
        assert len(_poll_all(naive, MESSAGES)) == MESSAGES
        first = next(batches)
        assert first.keys, "the source read nothing"
        assert len(_poll_all(stage, MESSAGES)) == MESSAGES
        time.sleep(HOLD_S)

        # the naive group has committed every polled message: a crash now would lose them all
        assert sum(kafka_broker.committed(naive_group, naive_topic).values()) == MESSAGES
        # ours have committed nothing: a crash now makes the next member read them again
        assert kafka_broker.committed(source_group, source_topic) == {}
        assert kafka_broker.committed(stage_group, stage_topic) == {}
    finally:
        batches.close()
        source.close()
        stage.close()
        naive.close()
    # the source's poller, closed with work unacknowledged, committed nothing on its way out
    assert kafka_broker.committed(source_group, source_topic) == {}
    assert kafka_broker.committed(stage_group, stage_topic) == {}
