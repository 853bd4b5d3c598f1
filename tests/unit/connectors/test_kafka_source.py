"""The ``kafka`` source on a real tansu broker: the pipeline, poison, groups, pacing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from connectors.kafka import KafkaSourceConnector
from connectors.kafka.config import KafkaConfig
from junction.core.errors import ConfigError, FatalError, UnavailableError
from junction.core.registry import Registry
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from tests.fakes.kafka_broker import KafkaBroker, kafka_broker
from tests.fakes.server import serve_app
from tests.integration.helpers import scalar

__all__ = ["kafka_broker"]

REGISTRY = Registry(extra={"connectors": {"kafka": KafkaSourceConnector}})
FAST = {"session_timeout_ms": 2000, "idle_timeout_s": 1.0, "poll_timeout_s": 0.1}

CONFIG = """\
store: "{store}"
models_dir: {root}/models
pipelines:
  leads:
    source:
      connector: kafka
      bootstrap_servers: "{bootstrap}"
      topics: [{topic}]
      group_id: {group}
      session_timeout_ms: 2000
      idle_timeout_s: 1.0
      poll_timeout_s: 0.1
    mapping: csv.lead
    batch_size: 7
    workers: 0
"""


def _topic(broker, partitions: int = 3) -> str:
    name = f"leads.{uuid.uuid4().hex[:10]}"
    broker.create_topic(name, partitions)
    return name


def _produce(broker, topic: str, items: list[tuple[str | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for key, value in items:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(15) == 0


def _lead(i: int) -> tuple[str, bytes]:
    body = {"lead_id": f"L{i}", "email": f"lead{i}@example.com", "company": "Acme"}
    return f"L{i}", json.dumps(body).encode()


def _conn(broker, topic: str, group: str, **extra: Any) -> KafkaSourceConnector:
    options = {
        "bootstrap_servers": broker.bootstrap,
        "topics": [topic],
        "group_id": group,
        "batch_size": 5,
        **FAST,
        **extra,
    }
    return KafkaSourceConnector(KafkaConfig.model_validate(options))


def _config(root: Path, store: str, broker, topic: str, group: str, extra: str = "") -> Path:
    """A hub config with one kafka pipeline; ``extra`` adds source option lines."""
    (root / "models").mkdir(exist_ok=True)
    cfg = root / "junction.yaml"
    text = CONFIG.format(
        root=root, store=store, bootstrap=broker.bootstrap, topic=topic, group=group
    )
    cfg.write_text(text.replace("    mapping:", extra + "    mapping:"), encoding="utf-8")
    return cfg


def _hub(root: Path, store: str, broker, topic: str, group: str, extra: str = "") -> Hub:
    return Hub(load_config(_config(root, store, broker, topic, group, extra)), registry=REGISTRY)


def test_pipeline_stores_every_message_once_and_resumes_from_its_cursor(
    tmp_path, kafka_broker, store_url
):
    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(40)])
    hub = _hub(tmp_path, store_url, kafka_broker, topic, group)
    try:
        [first] = hub.run_once()
        cursor = hub.store.get_cursor("leads", topic)
    finally:
        hub.close()
    assert (first.read, first.stored, first.quarantined) == (40, 40, 0)
    assert cursor is not None
    assert sum(cursor.values()) == 40
    # the group's offsets were committed after the store's, and equal its cursor
    assert kafka_broker.committed(group, topic) == cursor

    _produce(kafka_broker, topic, [_lead(i) for i in range(40, 52)])
    hub = _hub(tmp_path, store_url, kafka_broker, topic, group)
    try:
        [second] = hub.run_once()
        [third] = hub.run_once()
    finally:
        hub.close()
    assert (second.read, second.stored) == (12, 12)
    assert third.read == 0
    assert scalar(store_url, "SELECT COUNT(*) FROM records") == 52
    assert scalar(store_url, "SELECT COUNT(DISTINCT source_key) FROM records") == 52


def test_the_store_cursor_wins_over_the_group_offset_after_a_lost_commit(kafka_broker):
    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(12)])
    conn = _conn(kafka_broker, topic, group)
    try:
        batches = conn.read(topic, None)
        first = next(batches)
        batches.close()  # the runner never asked for more: the batch was not committed
        assert kafka_broker.committed(group, topic) == {}
        # a store that did commit the batch resumes after it, whatever the group says
        rest = [k for b in conn.read(topic, first.cursor) for k in b.keys]
    finally:
        conn.close()
    assert len(first.keys) + len(rest) == 12
    assert not set(first.keys) & set(rest)
    assert sum(kafka_broker.committed(group, topic).values()) == 12


def test_poison_goes_to_the_dead_letter_topic_with_context_headers(kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    dlq = f"junction.deadletter.{uuid.uuid4().hex[:8]}"
    _produce(
        kafka_broker,
        topic,
        [_lead(0), ("bad", b"{not json"), (None, b"[1, 2]"), _lead(3), ("bin", b"\xff\xfe")],
    )
    conn = _conn(kafka_broker, topic, group, deadletter_topic=dlq)
    try:
        batches = list(conn.read(topic, None))
    finally:
        conn.close()
    keys = [k for b in batches for k in b.keys]
    assert keys == [f"L0@{topic}:0:0", f"L3@{topic}:0:3"]
    assert all(not b.errors for b in batches)
    assert conn.dead_lettered == 3
    assert batches[-1].cursor == {f"{topic}/0": 5}
    letters = kafka_broker.read_all(dlq)
    got = [({k: v.decode() for k, v in m.headers()}, m.value()) for m in letters]
    got.sort(key=lambda item: int(item[0]["junction.source.offset"]))
    assert [(h["junction.source.offset"], h["junction.error.code"]) for h, _ in got] == [
        ("1", "invalid_json"),
        ("2", "not_an_object"),
        ("4", "encoding_error"),
    ]
    headers, value = got[0]
    assert value == b"{not json"
    assert headers["junction.source.topic"] == topic
    assert headers["junction.source.partition"] == "0"
    assert headers["junction.connector"] == "kafka"
    assert headers["junction.group"] == group


def test_a_batch_of_only_poison_moves_the_cursor_to_the_default_dead_letter_topic(
    tmp_path, kafka_broker
):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [("k", b"nope"), ("k2", b"")])
    hub = _hub(tmp_path, f"sqlite:///{tmp_path}/j.db", kafka_broker, topic, group)
    try:
        [summary] = hub.run_once()
        cursor = hub.store.get_cursor("leads", topic)
        quarantined = hub.store.list_quarantine()
    finally:
        hub.close()
    assert (summary.read, summary.stored, summary.quarantined) == (0, 0, 0)
    assert quarantined == []  # dead-lettered, not quarantined twice
    assert cursor == {f"{topic}/0": 2}
    mine = [
        m
        for m in kafka_broker.read_all("junction.deadletter")
        if dict(m.headers() or []).get("junction.source.topic") == topic.encode()
    ]
    assert sorted(m.key() for m in mine) == [b"k", b"k2"]


def test_with_errors_tolerance_none_a_poison_message_fails_the_run_and_holds_the_offset(
    tmp_path, kafka_broker
):
    # Kafka Connect's errors.tolerance=none (RELIABILITY case 14): the task fails, the offset
    # of the batch holding the poison message is not committed, nothing of it is stored
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    dlq = f"junction.deadletter.{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(7)])  # the first batch of 7
    _produce(kafka_broker, topic, [_lead(7), ("bad", b"{oops"), _lead(9)])
    store = f"sqlite:///{tmp_path}/j.db"
    extra = f"      errors_tolerance: none\n      deadletter_topic: {dlq}\n"
    for _ in range(2):  # read again: it stops at the same message
        hub = _hub(tmp_path, store, kafka_broker, topic, group, extra)
        try:
            with pytest.raises(FatalError, match=f"{topic}:0:8") as info:
                hub.run_once()
            cursor = hub.store.get_cursor("leads", topic)
        finally:
            hub.close()
        assert info.value.code == "poison_message"
        assert info.value.context["offset"] == 8
        assert cursor == {f"{topic}/0": 7}  # the clean first batch, not past the poison one
        assert kafka_broker.committed(group, topic, 1) == {f"{topic}/0": 7}
        assert scalar(store, "SELECT COUNT(*) FROM records") == 7
        assert scalar(store, "SELECT COUNT(*) FROM quarantine") == 0
    assert kafka_broker.read_all(dlq) == []  # not dead-lettered either


def test_dead_letters_name_the_error_class(kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    dlq = f"junction.deadletter.{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [("bad", b"{not json")])
    conn = _conn(kafka_broker, topic, group, deadletter_topic=dlq)
    try:
        list(conn.read(topic, None))
    finally:
        conn.close()
    [letter] = kafka_broker.read_all(dlq)
    headers = {k: v.decode() for k, v in letter.headers()}
    assert headers["junction.error.class"] == "ParseError"
    assert headers["junction.error.message"]


def test_without_a_dead_letter_topic_poison_is_quarantined_in_the_store(tmp_path, kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(0), ("bad", b"{oops")])
    store = f"sqlite:///{tmp_path}/j.db"
    hub = _hub(tmp_path, store, kafka_broker, topic, group, "      deadletter_topic: null\n")
    try:
        [summary] = hub.run_once()
        [q] = hub.store.list_quarantine()
    finally:
        hub.close()
    assert (summary.stored, summary.quarantined) == (1, 1)
    assert q["error_code"] == "invalid_json"


CHILD = """\
import sys, time
from connectors.kafka import KafkaSourceConnector
from junction.core.registry import Registry
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub

registry = Registry(extra={{"connectors": {{"kafka": KafkaSourceConnector}}}})
hub = Hub(load_config(sys.argv[1]), registry=registry)
hub.run_once(progress=lambda n: time.sleep(0.3))  # slow enough to be killed mid-stream
"""


def _stored(store_url: str) -> int:
    try:
        return scalar(store_url, "SELECT COUNT(*) FROM records")
    except DBAPIError:  # the child has not created the tables yet
        return 0


def test_a_sigkilled_consumer_restarts_without_loss_or_duplicates(
    tmp_path, kafka_broker, store_url
):
    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(60)])
    cfg = _config(tmp_path, store_url, kafka_broker, topic, group)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(), encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(cfg)], cwd=Path(__file__).parents[3])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if _stored(store_url) >= 14:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    stored = scalar(store_url, "SELECT COUNT(*) FROM records")
    assert 14 <= stored < 60
    hub = _hub(tmp_path, store_url, kafka_broker, topic, group)
    try:
        [summary] = hub.run_once()
        cursor = hub.store.get_cursor("leads", topic)
    finally:
        hub.close()
    assert scalar(store_url, "SELECT COUNT(*) FROM records") == 60
    assert scalar(store_url, "SELECT COUNT(DISTINCT source_key) FROM records") == 60
    assert summary.stored <= 60 - stored + 7  # at most the batch in flight is read again
    assert cursor is not None
    assert sum(cursor.values()) == 60


def test_a_slow_pipeline_pauses_and_stays_in_the_group(kafka_broker):
    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(30)])
    conn = _conn(kafka_broker, topic, group, max_poll_interval_ms=2000, max_buffered_batches=1)
    keys: list[str] = []
    try:
        for j, batch in enumerate(conn.read(topic, None)):
            keys += batch.keys
            if j == 0:
                time.sleep(3.0)  # longer than max.poll.interval.ms: the poller keeps polling
    finally:
        conn.close()
    assert len(keys) == 30
    assert len(set(keys)) == 30
    assert conn.pauses >= 1
    assert conn.revokes == 1  # only the close: the member never fell out of the group
    assert sum(kafka_broker.committed(group, topic).values()) == 30


def test_two_members_of_one_group_split_the_partitions(kafka_broker):
    topic, group = _topic(kafka_broker, 4), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(80)])
    conns = [_conn(kafka_broker, topic, group, idle_timeout_s=3.0) for _ in range(2)]
    got: list[list[str]] = [[], []]
    parts: list[set[str]] = [set(), set()]
    errors: list[BaseException] = []

    def member(i: int) -> None:
        try:
            for batch in conns[i].read(topic, None):
                got[i] += batch.keys
                parts[i] |= {k.split("@")[1].rsplit(":", 1)[0] for k in batch.keys}
                if not (got[0] and got[1]):
                    time.sleep(
                        0.25
                    )  # slow until both read: neither finishes before the other joins
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    for c in conns:
        c.close()
    assert not errors
    assert len(set(got[0]) | set(got[1])) == 80
    assert got[0], "the first member read"
    assert got[1], "the second member read"
    assert len(parts[0] | parts[1]) == 4
    assert sum(kafka_broker.committed(group, topic, 4).values()) == 80


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "avro"}, "needs schema_registry_url"),
        ({"schema_registry_url": "http://r:8081"}, "only used with format"),
        ({"max_poll_interval_ms": 1000, "session_timeout_ms": 2000}, "at least session"),
        ({"username": "u"}, "go together"),
        ({"colour": "red"}, "Extra inputs"),
    ],
    ids=[
        "avro-without-registry",
        "registry-with-json",
        "poll-below-session",
        "user-alone",
        "extra",
    ],
)
def test_config_refuses(options, message):
    with pytest.raises(ValueError, match=message):
        KafkaConfig.model_validate(
            {"bootstrap_servers": "h:9092", "topics": ["t"], "group_id": "g", **options}
        )


def test_avro_is_refused_until_its_dependencies_are_installed(kafka_broker):
    conn = _conn(kafka_broker, "t", "g", format="avro", schema_registry_url="http://127.0.0.1:9")
    try:
        with pytest.raises(ConfigError, match="fastavro"):
            next(conn.read("t", None))
    finally:
        conn.close()


def test_a_foreign_cursor_is_refused(kafka_broker):
    conn = _conn(kafka_broker, "t", "g")
    try:
        with pytest.raises(ConfigError, match="unknown format"):
            next(conn.read("t", {"row": 3}))
    finally:
        conn.close()


def test_check_and_discover(kafka_broker):
    topic = _topic(kafka_broker)
    conn = _conn(kafka_broker, topic, "g")
    missing = _conn(kafka_broker, f"absent.{uuid.uuid4().hex[:6]}", "g")
    try:
        assert conn.check().ok
        [stream] = conn.discover()
        assert stream.name == topic
        bad = missing.check()
    finally:
        conn.close()
        missing.close()
    assert not bad.ok


def test_a_dead_letter_that_cannot_be_produced_stops_the_read_before_its_batch(kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(0), ("bad", b"{oops"), _lead(2)])
    conn = _conn(kafka_broker, topic, group, deadletter_topic="not a valid topic!", timeout_s=2)
    try:
        with pytest.raises(FatalError, match="TOPIC_EXCEPTION"):
            list(conn.read(topic, None))
    finally:
        conn.close()
    assert kafka_broker.committed(group, topic, 1) == {}


LEAD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"lead_id": {"type": "string"}, "email": {"type": "string"}},
    "required": ["lead_id", "email"],
}


def _registry_app() -> FastAPI:
    """A Confluent-compatible schema registry holding one JSON Schema (id 7) and one Avro (id 8)."""
    app = FastAPI()
    schemas = {
        7: {"schemaType": "JSON", "schema": json.dumps(LEAD_SCHEMA)},
        8: {"schema": json.dumps({"type": "record", "name": "Lead", "fields": []})},
    }

    @app.get("/schemas/ids/{schema_id}")
    def schema(schema_id: int) -> JSONResponse:
        if schema_id not in schemas:
            return JSONResponse({"error_code": 40403, "message": "Schema not found"}, 404)
        return JSONResponse(schemas[schema_id])

    return app


def _framed(schema_id: int, body: Any) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + json.dumps(body).encode()


def test_jsonschema_payloads_are_validated_against_the_registry(kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    dlq = f"junction.deadletter.{uuid.uuid4().hex[:8]}"
    good = {"lead_id": "L1", "email": "a@example.com"}
    _produce(
        kafka_broker,
        topic,
        [
            ("a", _framed(7, good)),
            ("b", _framed(7, {"lead_id": 5, "email": "x"})),  # lead_id is not a string
            ("c", json.dumps(good).encode()),  # plain JSON: not framed
            ("d", _framed(99, good)),  # an id the registry does not know
            ("e", _framed(8, good)),  # an Avro schema id
            ("f", _framed(8, good)),  # the same, from the cache
        ],
    )
    with serve_app(_registry_app()) as url:
        conn = _conn(
            kafka_broker,
            topic,
            group,
            format="jsonschema",
            schema_registry_url=url,
            deadletter_topic=dlq,
        )
        try:
            batches = list(conn.read(topic, None))
        finally:
            conn.close()
    assert [r for b in batches for r in b.records] == [good]
    codes = sorted(
        (dict(m.headers())["junction.source.offset"], dict(m.headers())["junction.error.code"])
        for m in kafka_broker.read_all(dlq)
    )
    assert codes == [
        (b"1", b"schema_invalid"),
        (b"2", b"not_framed"),
        (b"3", b"schema_not_found"),
        (b"4", b"wrong_schema_type"),
        (b"5", b"wrong_schema_type"),
    ]


def test_an_unreachable_registry_is_retryable_not_poison(kafka_broker):
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [("a", _framed(7, {"lead_id": "L1", "email": "e"}))])
    conn = _conn(
        kafka_broker, topic, group, format="jsonschema", schema_registry_url="http://127.0.0.1:9"
    )
    try:
        with pytest.raises(UnavailableError):
            list(conn.read(topic, None))
    finally:
        conn.close()
    assert conn.dead_lettered == 0
    assert kafka_broker.committed(group, topic, 1) == {}


def test_brokers_that_never_answer_are_unavailable_not_an_empty_read():
    conn = _conn(_Nowhere(), "t", "g", join_timeout_s=1.5)
    try:
        with pytest.raises(UnavailableError):
            list(conn.read("t", None))
    finally:
        conn.close()


class _Nowhere:
    """A bootstrap address where nothing listens."""

    bootstrap = "127.0.0.1:9"


def test_a_read_ends_on_the_watermarks_not_on_a_short_silence(kafka_broker):
    """An idle timeout far shorter than a partition's start still reads every partition."""
    from junction.core.metrics import REGISTRY as PROM

    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(30)])
    conn = _conn(kafka_broker, topic, group, idle_timeout_s=0.01)
    try:
        keys = [k for b in conn.read(topic, None) for k in b.keys]
    finally:
        conn.close()
    assert len(keys) == len(set(keys)) == 30
    # the read published its partitions' lag as it ended: nothing left unread
    lags = [
        PROM.get_sample_value(
            "junction_consumer_lag",
            {"pipeline": f"source.{group}", "topic": topic, "partition": str(p)},
        )
        for p in range(3)
    ]
    assert lags == [0.0, 0.0, 0.0]


def test_a_cursor_past_the_log_end_fails_the_read_even_once_it_is_idle(kafka_broker):
    """The first fetch's watermarks show the cursor past the end; the read was idle already.

    It ended as caught up (nothing unread on those watermarks) before it looked at the error
    they came with: the next run reported success and the new messages waited unread.  Found
    by the fault suite (a broker restarted empty), with a 0.5 s idle timeout: tansu answers the
    first fetch about 0.5 s after the assignment (``fetch.wait.max.ms``).
    """
    topic, group = _topic(kafka_broker, 1), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(3)])
    for _ in range(3):
        conn = _conn(kafka_broker, topic, group, idle_timeout_s=0.05)
        try:
            with pytest.raises(FatalError) as err:
                list(conn.read(topic, {f"{topic}/0": 10}))
        finally:
            conn.close()
        assert err.value.code == "cursor_past_log_end"


def test_a_member_between_a_lost_session_and_its_next_assignment_waits_for_it():
    """A frozen broker outlasts the session: the partitions are lost, the member rejoins.

    While it rejoined it owned nothing, and the read ended as caught up although messages
    waited (a run that ends early; and on tansu a consumer closed mid-rejoin leaves the group
    waiting for a leader that never syncs, so the next runs got no partitions at all).
    """
    with KafkaBroker() as broker:
        topic, group = _topic(broker, 1), f"g-{uuid.uuid4().hex[:8]}"
        _produce(broker, topic, [_lead(i) for i in range(5)])
        conn = _conn(broker, topic, group, session_timeout_ms=1000, idle_timeout_s=0.3)
        keys: list[str] = []
        try:
            read = conn.read(topic, None)
            keys += next(read).keys
            broker.pause()
            time.sleep(1.8)  # the client declares the session lost after 1 s: a revoke
            broker.resume()
            _produce(broker, topic, [_lead(i) for i in range(5, 10)])
            keys += [k for batch in read for k in batch.keys]
        finally:
            conn.close()
        # the first batch was never committed (its partition was gone): read again, with the rest
        assert {k.split("@")[0] for k in keys} == {f"L{i}" for i in range(10)}
        assert conn.revokes >= 2  # the lost session, then the close


def test_a_caught_up_member_is_kept_for_the_next_read_until_the_cursor_moves_elsewhere(
    kafka_broker,
):
    """Scheduled reads of one hub: the next read goes on with the same member (no join, no
    rebalance) and gets only what arrived since; a cursor this member did not leave (a replay)
    gets a new member that starts there; ``keep_member: false`` leaves the group every read."""
    topic, group = _topic(kafka_broker), f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [_lead(i) for i in range(10)])
    conn = _conn(kafka_broker, topic, group)
    try:
        first = list(conn.read(topic, None))
        cursor = first[-1].cursor
        member = conn._reader
        assert member is not None  # kept
        assert sum(cursor.values()) == 10
        # Kafka holds the read's offsets when it returns, as when the member left
        assert kafka_broker.committed(group, topic) == cursor

        _produce(kafka_broker, topic, [_lead(i) for i in range(10, 15)])
        second = list(conn.read(topic, cursor))
        assert conn._reader is member
        assert conn.revokes == 0  # it never left the group: no rebalance, no join
        assert {k.split("@")[0] for b in second for k in b.keys} == {f"L{i}" for i in range(10, 15)}
        after = second[-1].cursor
        assert list(conn.read(topic, after)) == []  # nothing new: caught up at once
        assert conn._reader is member

        # a replay from the first cursor is not where this member stands: a new one starts there
        replay = [k for b in conn.read(topic, cursor) for k in b.keys]
        assert conn._reader is not member
        assert conn.revokes == 1  # the kept member left (its close)
        assert {k.split("@")[0] for k in replay} == {f"L{i}" for i in range(10, 15)}
    finally:
        conn.close()
    assert conn._reader is None

    other = _conn(kafka_broker, topic, f"g-{uuid.uuid4().hex[:8]}", keep_member=False)
    try:
        assert sum(len(b.keys) for b in other.read(topic, None)) == 15
        assert other._reader is None  # left at the read's end
        assert other.revokes == 1
    finally:
        other.close()


def test_a_kept_member_whose_broker_lost_its_data_fails_the_next_read_not_silently():
    """The broker comes back empty while a member is kept between reads: the new messages sit
    below the store's cursor.  The next read fails with ``cursor_past_log_end`` (as a new
    member's does), never reads offsets, hence record keys, the store already holds."""
    with KafkaBroker() as broker:
        topic, group = _topic(broker, 1), f"g-{uuid.uuid4().hex[:8]}"
        _produce(broker, topic, [_lead(i) for i in range(8)])
        conn = _conn(broker, topic, group)
        try:
            cursor = list(conn.read(topic, None))[-1].cursor
            assert cursor == {f"{topic}/0": 8}
            assert conn._reader is not None  # kept
            broker.restart()
            broker.create_topic(topic, 1)
            _produce(broker, topic, [_lead(i) for i in range(100, 103)])  # offsets 0..2
            with pytest.raises(FatalError) as caught:
                list(conn.read(topic, cursor))
            assert caught.value.code == "cursor_past_log_end"
        finally:
            conn.close()
