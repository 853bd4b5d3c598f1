"""The stage relay under encryption at rest: sealed in the store, clear on the topics.

- ingest → normalize → score with ``privacy:`` on: every relay row's value is sealed (a dump of
  the store holds no canary), while the scored topic carries the opened records downstream;
  erasure still deletes or blanks the subject's relay rows;
- a flipped bit, a damaged prefix or a value moved to another row fails the publish with
  ``DecryptionError`` and sends and marks nothing;
- without encryption the relay values stay as they were (plain stage messages);
- a KEK rotation re-wraps the relay's key: a new process opens the rows under the new KEK.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from sqlalchemy import select, update

from junction.core.errors import DecryptionError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.pipeline.stages.relay import SUBJECT, Relay, insert_rows, relay_row
from junction.pipeline.stages.worker import StageWorker
from junction.serve.stage_worker import run_ingest, run_stage_worker
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.channel_secrets import SUBJECT as CHANNEL_SECRETS
from junction.store.crypto import env_kek
from junction.store.crypto_rows import StorePrivacy, enable_privacy
from junction.store.erasure import erase
from junction.store.keyring import key_counts
from junction.store.relay_marks import unpublished
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from tests.fakes.kafka_broker import KafkaBroker, kafka_broker  # noqa: F401 - the broker fixture
from tests.privacy.conftest import CANARIES, assert_no_canary, drop_people_csv, dump
from tests.stages.support import read_topic, write_config

pytestmark = pytest.mark.timeout(240)
SEALED = b"JX1:" + SUBJECT.encode() + b":"


def _relay_values(store: Store) -> list[tuple[str, bytes, bool]]:
    """Key, value and whether published (marked on its own or under its scope's watermark)."""
    c = t.stage_relay.c
    with store.begin() as conn:
        return [
            (str(k), bytes(v), bool(p))
            for k, v, p in conn.execute(select(c.key, c.value, ~unpublished()).order_by(c.id))
        ]


def _sealed_config(
    root: Path,
    store_url: str,
    broker: KafkaBroker,
    models: Path,
    kek: str,
    prefix: str,
    *,
    partitions: int,
) -> Path:
    """The stage tests' hub config on ``broker``, with encryption at rest under ``kek``."""
    cfg = write_config(
        root,
        store=store_url,
        bootstrap=broker.bootstrap,
        models=models,
        prefix=prefix,
        partitions=partitions,
    )
    cfg.write_text(cfg.read_text() + f"privacy:\n  kek: {kek}\n")
    return cfg


def test_stage_chain_seals_relay_rows_and_topics_stay_clear(
    tmp_path: Path,
    store_url: str,
    models_dir: Path,
    kek: str,
    kafka_broker: KafkaBroker,  # noqa: F811
) -> None:
    prefix = f"seal{tmp_path.name[-6:]}"
    cfg = _sealed_config(tmp_path, store_url, kafka_broker, models_dir, kek, prefix, partitions=2)
    setup = Store.open(store_url)
    try:
        enable_privacy(setup, kek=kek)
    finally:
        setup.close()
    drop_people_csv(tmp_path / "inbox" / "leads.csv", CANARIES, ids="C", filler=20, seed=5)
    hub = Hub(load_config(cfg))
    try:
        ingest = run_ingest(hub, threading.Event(), once=True)
        assert ingest.read == 23
        normalize = StageWorker(hub.cfg, hub.store, ("normalize",))
        try:
            normalize.run(threading.Event(), idle_exit_s=2.0)
        finally:
            normalize.close()
        scored = run_stage_worker(hub, ("score",), threading.Event(), idle_exit_s=2.0)
        assert scored.consumed > 0
        rows = _relay_values(hub.store)
        with hub.store.begin() as conn:
            people = key_counts(conn, system=[CHANNEL_SECRETS, SUBJECT])
            everyone = key_counts(conn)
    finally:
        hub.close()
    # `keys status` counts people: the relay's store-level key is nobody's
    assert everyone["people"] == people["people"] + 1
    assert people["system"] == 1
    # raw, canonical and scored messages went through the relay, every one sealed and sent
    assert len(rows) >= 3 * 21
    assert all(v.startswith(SEALED) and p for _k, v, p in rows)
    assert_no_canary(dump(store_url))
    # downstream, the scored topic carries the records opened, personal fields and all
    out = read_topic(kafka_broker.bootstrap, f"{prefix}.scored.lead.v1", expect=scored.passed)
    emails = {m[3]["record"].get("email") for m in out}
    assert {CANARIES[0]["email"], CANARIES[1]["email"]} <= emails
    raw = read_topic(kafka_broker.bootstrap, f"{prefix}.raw.lead.v1", expect=23)
    assert any(m[3]["record"]["phone"] == CANARIES[2]["phone"] for m in raw)

    # erasure: the subject's (published) relay rows lose their value
    store = Store.open(store_url)
    ps = Pseudonymizer(b"p" * 32)
    try:
        report = erase(
            store,
            emails=[CANARIES[0]["email"]],  # type: ignore[list-item]
            actor="cli:dpo",
            audit=AuditLog(store, ps),
            suppressions=SuppressionList(store, ps),
        )
        after = _relay_values(store)
    finally:
        store.close()
    assert report.records == 1
    assert report.relay >= 3
    assert report.relay == 3  # its raw, canonical and scored messages (all sent)
    blanked = {k for k, v, _p in after if v == b""}
    assert len(blanked) == 1
    assert sum(v == b"" for _k, v, _p in after) == 3
    assert all(v.startswith(SEALED) for k, v, _p in after if k not in blanked)


def _rows(topic: str) -> list[tuple[str, str, str, bytes, str | None, str, float]]:
    out = []
    for i, person in enumerate(CANARIES[:2]):
        value = orjson.dumps({"pipeline": "leads", "record_id": f"leads:C{i}", "record": person})
        out.append(
            relay_row(
                "scope-1", topic, f"leads:C{i}", value, {"pipeline": "leads"}, f"{topic}|d{i}"
            )
        )
    return out


def _set_value(store: Store, dedupe: str, value: bytes) -> None:
    with store.begin() as conn:
        conn.execute(
            update(t.stage_relay).where(t.stage_relay.c.dedupe == dedupe).values(value=value)
        )


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})


def test_a_damaged_or_moved_relay_value_fails_the_publish_loudly(
    tmp_path: Path,
    sealed_store: tuple[Store, StorePrivacy],
    kafka_broker: KafkaBroker,  # noqa: F811
) -> None:
    store, _privacy = sealed_store
    topic = f"tamper{tmp_path.name[-6:]}"
    kafka_broker.create_topic(topic, 1)
    rows = _rows(topic)
    with store.begin() as conn:
        insert_rows(store, conn, rows)
    stored = {k: v for k, v, _p in _relay_values(store)}
    sealed = [stored["leads:C0"], stored["leads:C1"]]
    assert all(v.startswith(SEALED) for v in sealed)
    assert_no_canary(repr(sealed))
    relay = Relay(store, _producer(kafka_broker.bootstrap), timeout_s=30)
    d0, d1 = rows[0][5], rows[1][5]
    flipped = bytearray(sealed[1])
    flipped[-3] ^= 0x01
    prefix_hit = bytearray(sealed[0])
    prefix_hit[0] ^= 0x01
    for damage in (
        [(d1, bytes(flipped))],  # a flipped bit in the ciphertext
        [(d0, bytes(prefix_hit))],  # a flipped bit in the prefix: not sent as it is
        [(d0, sealed[1]), (d1, sealed[0])],  # values swapped between rows
        [(d0, sealed[0][:-20])],  # truncated
    ):
        for dedupe, value in damage:
            _set_value(store, dedupe, value)
        with pytest.raises(DecryptionError):
            relay.publish(["scope-1"])
        assert [p for _k, _v, p in _relay_values(store)] == [False, False]  # nothing marked
        _set_value(store, d0, sealed[0])
        _set_value(store, d1, sealed[1])
    assert read_topic(kafka_broker.bootstrap, topic, expect=0, timeout_s=5) == []
    # repaired, the rows go out opened, in order
    assert relay.publish(["scope-1"]) == 2
    out = read_topic(kafka_broker.bootstrap, topic, expect=2)
    assert [orjson.dumps(m[3]) for m in out] == [r[3] for r in rows]


def test_without_encryption_relay_values_stay_plain(
    tmp_path: Path,
    store_url: str,
    kafka_broker: KafkaBroker,  # noqa: F811
) -> None:
    store = Store.open(store_url)
    try:
        topic = f"plain{tmp_path.name[-6:]}"
        kafka_broker.create_topic(topic, 1)
        rows = _rows(topic)
        with store.begin() as conn:
            insert_rows(store, conn, rows)
        assert [v for _k, v, _p in _relay_values(store)] == [r[3] for r in rows]
        relay = Relay(store, _producer(kafka_broker.bootstrap), timeout_s=30)
        assert relay.publish(["scope-1"]) == 2
    finally:
        store.close()
    out = read_topic(kafka_broker.bootstrap, topic, expect=2)
    assert [orjson.dumps(m[3]) for m in out] == [r[3] for r in rows]


def test_kek_rotation_rewraps_the_relay_key_and_a_new_process_publishes(
    tmp_path: Path,
    store_url: str,
    sealed_store: tuple[Store, StorePrivacy],
    kafka_broker: KafkaBroker,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, privacy = sealed_store
    topic = f"rot{tmp_path.name[-6:]}"
    kafka_broker.create_topic(topic, 1)
    rows = _rows(topic)
    with store.begin() as conn:
        insert_rows(store, conn, rows)
    monkeypatch.setenv("JUNCTION_TEST_KEK_NEW", secrets.token_urlsafe(48))
    new = env_kek("JUNCTION_TEST_KEK_NEW")
    with store.begin() as conn:
        privacy.keyring.rotate(conn, new, new_source="env:JUNCTION_TEST_KEK_NEW")
        kek_ids = set(
            conn.execute(
                select(t.data_keys.c.kek_id).where(t.data_keys.c.subject == SUBJECT)
            ).scalars()
        )
    assert kek_ids == {new.key_id}
    # a new process finds the new KEK through the store's settings and opens the rows
    fresh = Store.open(store_url)
    try:
        relay = Relay(fresh, _producer(kafka_broker.bootstrap), timeout_s=30)
        assert relay.publish(["scope-1"]) == 2
    finally:
        fresh.close()
    out = read_topic(kafka_broker.bootstrap, topic, expect=2)
    assert [orjson.dumps(m[3]) for m in out] == [r[3] for r in rows]


def test_a_stage_worker_stops_with_the_typed_error_on_a_damaged_relay_row(
    tmp_path: Path,
    models_dir: Path,
    kek: str,
    kafka_broker: KafkaBroker,  # noqa: F811
) -> None:
    prefix = f"stop{tmp_path.name[-6:]}"
    url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = _sealed_config(tmp_path, url, kafka_broker, models_dir, kek, prefix, partitions=1)
    raw = f"{prefix}.raw.lead.v1"
    kafka_broker.create_topic(raw, 1)
    kafka_broker.create_topic(f"{prefix}.canonical.lead.v1", 1)
    setup = Store.open(url)
    try:
        enable_privacy(setup, kek=kek)
        # what a dead normalize worker committed for partition 0 but did not send
        rows = [(f"{raw}:0", *r[1:]) for r in _rows(f"{prefix}.canonical.lead.v1")]
        with setup.begin() as conn:
            insert_rows(setup, conn, rows)
        flipped = bytearray(_relay_values(setup)[0][1])
        flipped[-1] ^= 0x80
        _set_value(setup, rows[0][5], bytes(flipped))
    finally:
        setup.close()
    hub = Hub(load_config(cfg))
    try:
        worker = StageWorker(hub.cfg, hub.store, ("normalize",))
        try:
            with pytest.raises(DecryptionError):
                worker.run(threading.Event(), idle_exit_s=10.0)
        finally:
            worker.close()
        assert [p for _k, _v, p in _relay_values(hub.store)] == [False, False]
    finally:
        hub.close()
