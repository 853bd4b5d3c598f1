"""The delivery worker drains the outbox into Kafka: a real tansu broker, the registered channel."""

from __future__ import annotations

import uuid

import orjson
import pytest

from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import build_channels
from junction.store.repo import Store
from tests.fakes.kafka_broker import KafkaBroker, shared_broker
from tests.integration.delivery_support import enqueue, run_worker
from tests.integration.helpers import rows_of


@pytest.fixture
def broker() -> KafkaBroker:
    return shared_broker()


def test_the_worker_delivers_the_outbox_to_a_topic_once_each(
    store: Store, store_url: str, broker: KafkaBroker
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.scored.lead.v1"
    broker.create_topic(topic, partitions=3)
    event = {"type": "lead.scored", "record_id": "leads:sf:L-7", "entity": "lead", "score": None}
    ids = [f"k-{n}" for n in range(40)]
    enqueue(store, "kafka.scored", ids, payload=event)
    channels = build_channels(
        {
            "kafka.scored": {
                "bootstrap_servers": broker.bootstrap,
                "topic": prefix + ".scored.{entity}.v1",
            }
        }
    )
    worker = run_worker(
        store, channels, DeliveryConfig(concurrency=50, per_endpoint_concurrency=20), drain_wait_s=0
    )
    assert worker.stats.delivered == len(ids)
    rows = rows_of(store_url, "SELECT id, status, remote_id FROM deliveries ORDER BY id")
    assert {r[1] for r in rows} == {"delivered"}
    messages = broker.read_all(topic)
    on_wire = {dict(m.headers())["event-id"].decode(): m for m in messages}
    assert sorted(on_wire) == sorted(ids)
    for delivery_id, _status, remote_id in rows:
        msg = on_wire[delivery_id]
        assert remote_id == f"{topic}/{msg.partition()}@{msg.offset()}"
        assert msg.key() == b"leads:sf:L-7"
        assert orjson.loads(msg.value()) == event
