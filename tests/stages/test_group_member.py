"""A stage worker's group membership: its heartbeat keeps up with the session timeout it runs.

A session timeout set in ``bus.options`` (``session.timeout.ms``, as the fault suites do to
move a dead member's partitions sooner) must bring the heartbeat down with it: a heartbeat
slower than the session times the live member out of its own group, and it churns through a
revoke and a rejoin every session, on a real broker.
"""

from __future__ import annotations

import time
import uuid

import pytest

from junction.pipeline.config import BusConfig
from junction.pipeline.stages.bus import SESSION_TIMEOUT_MS, _heartbeat_ms, make_consumer
from tests.fakes.kafka_broker import KafkaBroker


@pytest.mark.parametrize(
    ("session", "heartbeat"),
    [
        (None, SESSION_TIMEOUT_MS // 4),
        (2000, 500),
        ("6000", 1500),
        (200, 100),  # never below 100 ms
        ("soon", SESSION_TIMEOUT_MS // 4),  # librdkafka refuses the malformed value itself
    ],
)
def test_the_heartbeat_is_a_quarter_of_the_session_in_effect(
    session: object, heartbeat: int
) -> None:
    assert _heartbeat_ms(session) == heartbeat


def test_a_short_session_from_the_options_keeps_the_member_assigned(
    kafka_broker: KafkaBroker,
) -> None:
    topic = f"member-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 3)
    bus = BusConfig(bootstrap_servers=kafka_broker.bootstrap, options={"session.timeout.ms": 2000})
    events: list[tuple[str, int]] = []

    def on(kind: str) -> object:
        return lambda _c, parts: events.append((kind, len(parts)))

    consumer = make_consumer(bus, f"g-{topic}", on("assign"), on("revoke"), [topic])
    try:
        deadline = time.monotonic() + 30
        while not events and time.monotonic() < deadline:
            consumer.consume(10, 0.2)
        assert events == [("assign", 3)], events
        # four session timeouts pass: a live member keeps its partitions all along
        until = time.monotonic() + 4 * 2.0
        while time.monotonic() < until:
            consumer.consume(10, 0.2)
        assert events == [("assign", 3)], f"the member churned: {events}"
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
    finally:
        consumer.close()
