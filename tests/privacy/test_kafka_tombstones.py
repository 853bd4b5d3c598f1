"""Erasure tombstones the person on Kafka: channel topics and stage topics, a real broker."""

from __future__ import annotations

import uuid

import orjson
import pytest

from junction.core.errors import JunctionError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import build_channels
from junction.pipeline.stages.topics import STAGES, subject_key, topic_name
from junction.store.audit import AuditLog
from junction.store.crypto_rows import StorePrivacy
from junction.store.erasure import erase
from junction.store.erasure_kafka import STAGES as ERASURE_STAGES
from junction.store.erasure_kafka import Bus, hook
from junction.store.repo import Store
from tests.fakes.kafka_broker import KafkaBroker, shared_broker
from tests.integration.delivery_support import run_worker
from tests.privacy.conftest import CANARIES, delivery_row, record_row

ANN = CANARIES[0]


@pytest.fixture
def broker() -> KafkaBroker:
    return shared_broker()


def test_erasure_tombstones_channel_and_stage_topics(
    sealed_store: tuple[Store, StorePrivacy], broker: KafkaBroker
) -> None:
    store, _ = sealed_store
    prefix = f"t{uuid.uuid4().hex[:10]}"
    channel_topic = f"{prefix}.events.lead"
    stage_topics = [topic_name(prefix, stage, "lead") for stage in STAGES]
    for topic in [channel_topic, *stage_topics]:
        broker.create_topic(topic, partitions=2)
    channels = {
        "kafka.events": {
            "bootstrap_servers": broker.bootstrap,
            "topic": prefix + ".events.{entity}",
        }
    }
    records = [record_row(i, p) for i, p in enumerate(CANARIES)]
    events = {
        r[0]: {
            "type": "lead.scored",
            "record_id": r[0],
            "pipeline": "leads",
            "entity": "lead",
            "record": orjson.loads(r[6]),
        }
        for r in records
    }
    store.write_batch(
        records=records,
        scores=[],
        deliveries=[
            delivery_row(rid, "kafka.events", orjson.dumps(e).decode()) for rid, e in events.items()
        ],
        quarantined=[],
        cursor=None,
    )
    # the delivery worker sends the opened events (sealed at rest, plain on the wire)
    worker = run_worker(
        store, build_channels(channels), DeliveryConfig(concurrency=5), drain_wait_s=0
    )
    assert worker.stats.delivered == len(records)
    sent = {m.key(): orjson.loads(m.value()) for m in broker.read_all(channel_topic)}
    assert sent[b"leads:f00d:0"]["record"]["email"] == ANN["email"]

    bus = Bus(broker.bootstrap, prefix, {}, 15.0)
    report = erase(
        store,
        emails=[ANN["email"]],  # type: ignore[list-item]
        actor="cli:dpo",
        audit=AuditLog(store, Pseudonymizer(b"p" * 32)),
        before_commit=hook(channels=channels, bus=bus),
    )
    # a stage message is keyed by the connector's key ("leads:f00d:0" here), which a mapping's
    # source key ("row-0") may differ from: both forms are tombstoned on every stage topic
    assert report.tombstones == 1 + 2 * len(STAGES)
    assert report.deliveries == 1
    nulls = [m for m in broker.read_all(channel_topic) if m.value() is None]
    assert [m.key() for m in nulls] == [b"leads:f00d:0"]
    ann_keys = {subject_key("leads", "row-0").encode(), b"leads:f00d:0"}
    for topic in stage_topics:
        got = broker.read_all(topic)
        assert {m.key() for m in got} == ann_keys
        assert all(m.value() is None for m in got)


def test_a_broker_that_refuses_aborts_the_erasure(
    sealed_store: tuple[Store, StorePrivacy],
) -> None:
    store, _ = sealed_store
    store.write_batch(
        records=[record_row(0, ANN)], scores=[], deliveries=[], quarantined=[], cursor=None
    )
    dead = Bus("127.0.0.1:9", "nowhere", {}, 2.0)  # nothing listens on the discard port
    with pytest.raises(JunctionError):
        erase(
            store,
            emails=[ANN["email"]],  # type: ignore[list-item]
            actor="cli:dpo",
            audit=AuditLog(store),
            before_commit=hook(channels={}, bus=dead),
        )
    # nothing was erased: the erasure can be run again once the brokers are back
    assert store.fetch_record("leads:f00d:0") is not None
    assert AuditLog(store).query(action="subject.erase") == []


def test_the_stage_names_match_the_bus() -> None:
    assert ERASURE_STAGES == STAGES
