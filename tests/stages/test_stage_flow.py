"""The stage roles against the real broker and SQLite, one after another in this process.

- ingest → normalize → score → deliver, each its own worker, store the same records, scores,
  deliveries and quarantine as the single-process run of the same file, and the webhook sink
  receives each delivery once, signed;
- a message no stage can read is quarantined with its bytes (stage ``bus``); the batch goes on;
- a worker that committed a batch but died before publishing it: the partition's next owner
  publishes those rows first, in order, and reading the batch again adds nothing.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from junction.core.errors import UnavailableError
from junction.core.metrics import REGISTRY
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.pipeline.stages import bus as kafka_bus
from junction.pipeline.stages import worker as worker_module
from junction.pipeline.stages.topics import Item, encode
from junction.pipeline.stages.worker import StageWorker
from junction.serve.stage_worker import run_ingest, run_stage_worker
from scoring.synthetic import write_lead_csv
from tests.fakes.kafka_broker import KafkaBroker
from tests.integration.delivery_support import receiver
from tests.integration.helpers import UNPUBLISHED_RELAY, rows_of
from tests.stages.support import SECRET, produce, raw_messages, read_topic, write_config

pytestmark = pytest.mark.timeout(240)
ROWS = 1200


def _effects(url: str) -> dict[str, object]:
    return {
        "records": [
            (rid, json.loads(payload), source_key)
            for rid, payload, source_key in rows_of(
                url, "SELECT id, payload, source_key FROM records ORDER BY id"
            )
        ],
        "scores": rows_of(
            url, "SELECT record_id, model_version, value, grade, factors FROM scores ORDER BY 1"
        ),
        "deliveries": [
            (did, channel, json.loads(payload)["record"], json.loads(payload)["score"]["value"])
            for did, channel, payload in rows_of(
                url, "SELECT id, channel, payload FROM deliveries ORDER BY id"
            )
        ],
        "quarantine": rows_of(
            url, "SELECT record_key, stage, error_code FROM quarantine ORDER BY record_key"
        ),
    }


def _lag(prefix: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["pipeline"], s.labels["partition"]): s.value
        for metric in REGISTRY.collect()
        if metric.name == "junction_consumer_lag"
        for s in metric.samples
        if s.labels["topic"].startswith(prefix + ".")
    }


def _one_partition(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker, prefix: str
) -> tuple[str, Hub, list[tuple[str, bytes]]]:
    """A SQLite hub whose raw topic (one partition) holds 300 messages: L0..L149 v1, then v2."""
    url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path,
        store=url,
        bootstrap=kafka_broker.bootstrap,
        models=models_dir,
        prefix=prefix,
        batch=100,
    )
    kafka_broker.create_topic(f"{prefix}.raw.lead.v1", 1)
    messages = raw_messages(150, 2)
    produce(kafka_broker.bootstrap, f"{prefix}.raw.lead.v1", messages)
    return url, Hub(load_config(cfg)), messages


def _sent_once_in_order(url: str, kafka_broker: KafkaBroker, prefix: str) -> None:
    """One relay row per stored record, each sent once, each subject's versions in order;
    each row scoped by its input partition and keyed by its input message (the key a re-read
    of that message repeats, so it inserts nothing)."""
    records = rows_of(url, "SELECT count(*) FROM records")[0][0]
    relay = rows_of(url, "SELECT scope, topic, dedupe FROM stage_relay")
    assert len(relay) == records
    source, scored = f"{prefix}.raw.lead.v1:0", f"{prefix}.scored.lead.v1"
    offsets = set()
    for scope, topic, dedupe in relay:
        assert (scope, topic) == (source, scored)
        stem, offset = dedupe.rsplit(":", 1)
        assert stem == f"{scored}|{source}"
        offsets.add(int(offset))
    assert len(offsets) == records
    assert offsets <= set(range(300))  # the topic holds 300 messages
    out = read_topic(kafka_broker.bootstrap, f"{prefix}.scored.lead.v1", expect=records)
    ids = [v["record_id"] for *_, v in out]
    assert len(ids) == len(set(ids)) == records  # nothing sent twice, nothing missing
    versions: dict[str, list[str]] = {}
    for _, _, key, v in out:
        versions.setdefault(key, []).append(v["version"])
    assert all(vs == sorted(vs) for vs in versions.values())


def test_roles_in_turn_store_what_one_process_stores(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    drop = tmp_path / "leads.csv"
    write_lead_csv(drop, ROWS, seed=11)
    with receiver(SECRET) as sink:
        staged, single = tmp_path / "staged", tmp_path / "single"
        cfgs = {}
        for root in (staged, single):
            cfgs[root] = write_config(
                root,
                store=f"sqlite:///{root / 'j.db'}",
                bootstrap=kafka_broker.bootstrap,
                models=models_dir,
                prefix=f"flow{tmp_path.name[-4:]}",
                sink=f"{sink.url}/e",
            )
            shutil.copy(drop, root / "inbox" / "leads.csv")
        # one process, no topics (the bus section is ignored by `run`)
        hub = Hub(load_config(cfgs[single]))
        try:
            hub.run_once()
        finally:
            hub.close()
        # four workers, one role each
        hub = Hub(load_config(cfgs[staged]))
        stop = threading.Event()
        try:
            ingest = run_ingest(hub, stop, once=True)
            assert (ingest.read, ingest.passed) == (ROWS, ROWS)
            done = {}
            # normalize: its group reports each partition's lag while it holds it (all caught
            # up at the end) and forgets it when it gives the partitions away
            normalize = StageWorker(hub.cfg, hub.store, ("normalize",))
            try:
                done["normalize"] = normalize.run(threading.Event(), idle_exit_s=2.0)
                lag = _lag(hub.cfg.bus.topic_prefix)  # type: ignore[union-attr]
            finally:
                normalize.close()
            assert {p for p, _ in lag} == {"stage.normalize"}
            assert len(lag) == 6  # the topic's partitions
            assert set(lag.values()) == {0.0}
            assert not _lag(hub.cfg.bus.topic_prefix)  # type: ignore[union-attr]
            for role in ("score", "deliver"):
                done[role] = run_stage_worker(hub, (role,), threading.Event(), idle_exit_s=2.0)
            assert done["normalize"].consumed == ROWS
            assert done["score"].consumed == done["normalize"].passed
            assert done["deliver"].consumed == done["score"].passed
            hub.deliver(drain_wait_s=2.0)  # whatever the deliver role's sender left due
        finally:
            hub.close()
        staged_effects = _effects(f"sqlite:///{staged / 'j.db'}")
        assert staged_effects == _effects(f"sqlite:///{single / 'j.db'}")
        assert len(staged_effects["records"]) > ROWS * 0.98  # type: ignore[arg-type]
        # every delivery reached the sink once, signed (the receiver verified each signature)
        sent = sorted(sink.ids("sales") + sink.ids("nurture"))
        staged_ids = {d[0] for d in staged_effects["deliveries"]}  # type: ignore[union-attr]
        assert len(set(sent)) == len(sent)
        assert staged_ids <= set(sent)


def test_unreadable_messages_are_quarantined_with_their_bytes(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    prefix = f"bad{tmp_path.name[-4:]}"
    url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path, store=url, bootstrap=kafka_broker.bootstrap, models=models_dir, prefix=prefix
    )
    topic = f"{prefix}.raw.lead.v1"
    kafka_broker.create_topic(topic, 2)
    good = raw_messages(20, 1)
    bad = [
        ("x", b"\x00not json"),
        ("y", b'{"pipeline": "leads"}'),
        ("z", orjson.dumps({**orjson.loads(good[0][1]), "pipeline": "nobody"})),
    ]
    produce(kafka_broker.bootstrap, topic, [*bad, *good])
    hub = Hub(load_config(cfg))
    try:
        stats = run_stage_worker(hub, ("normalize", "score"), threading.Event(), idle_exit_s=2.0)
    finally:
        hub.close()
    assert stats.consumed == len(good) + len(bad)
    bus = rows_of(url, "SELECT stage, error_code, payload FROM quarantine WHERE stage = 'bus'")
    assert sorted(bytes(p) for _, _, p in bus) == sorted(v for _, v in bad)
    assert {code for _, code, _ in bus} == {"stage_message"}
    # the readable messages went on as usual: scored, or quarantined by their own stage
    held = {k for (k,) in rows_of(url, "SELECT record_key FROM quarantine WHERE stage != 'bus'")}
    scored = read_topic(
        kafka_broker.bootstrap, f"{prefix}.scored.lead.v1", expect=len(good) - len(held)
    )
    good_ids = {orjson.loads(v)["record_id"] for _, v in good}
    assert {v["record_id"] for *_, v in scored} | held == good_ids
    assert len(scored) == len(good_ids - held)


def test_a_batch_committed_but_not_published_goes_out_first_and_once(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    prefix = f"rel{tmp_path.name[-4:]}"
    url, hub, messages = _one_partition(tmp_path, models_dir, kafka_broker, prefix)
    try:
        first = StageWorker(hub.cfg, hub.store, ("normalize", "score"))
        assert first.relay is not None

        def broker_gone(_scopes: object) -> int:
            raise UnavailableError("injected: the broker went away after the commit")

        first.relay.publish = broker_gone  # type: ignore[method-assign]
        # the first batch commits its effects and relay rows, then publishing fails; the
        # worker dies there (closed without committing offsets)
        msgs = []
        while not msgs:
            msgs = first.consumer.consume(100, 1.0)
        with pytest.raises(UnavailableError):
            first.process(msgs)
        first.consumer.close()
        pending = rows_of(url, UNPUBLISHED_RELAY)
        held = rows_of(url, "SELECT count(*) FROM quarantine")[0][0]
        assert pending[0][0] == len(msgs) - held > 0
        # the next owner of the partition reads the batch again, then the rest
        stats = run_stage_worker(hub, ("normalize", "score"), threading.Event(), idle_exit_s=2.0)
    finally:
        hub.close()
    assert stats.consumed == len(messages)
    _sent_once_in_order(url, kafka_broker, prefix)


def test_a_closed_worker_leaves_its_asynchronous_offset_commits_done(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    """Each batch's offsets are committed without waiting (ADR-0032); closing commits them
    again and waits, so the group's offset is the partition's end and nothing is read twice."""
    prefix = f"off{tmp_path.name[-4:]}"
    url, hub, messages = _one_partition(tmp_path, models_dir, kafka_broker, prefix)
    try:
        worker = StageWorker(hub.cfg, hub.store, ("normalize", "score"))
        stats = worker.run(threading.Event(), idle_exit_s=2.0)
        group = worker.group
        worker.close()
        assert stats.batches >= 3  # 300 messages, batches of at most 100
        topic = f"{prefix}.raw.lead.v1"
        assert kafka_broker.committed(group, topic, 1) == {f"{topic}/0": len(messages)}
        again = run_stage_worker(hub, ("normalize", "score"), threading.Event(), idle_exit_s=2.0)
    finally:
        hub.close()
    assert again.consumed == 0
    assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == 0
    _sent_once_in_order(url, kafka_broker, prefix)


def test_a_worker_idles_out_only_once_nothing_is_left_unread(
    tmp_path: Path, models_dir: Path
) -> None:
    """Idle time alone does not end a worker: a broker that stalls as the worker is given its
    partitions (a busy machine) answers no fetch for a while, and the worker used to leave
    then with the topic unread.  It asks what is left, and waits for it."""
    prefix = f"idl{tmp_path.name[-4:]}"
    with KafkaBroker() as broker:  # its own: this test freezes it
        url, hub, messages = _one_partition(tmp_path, models_dir, broker, prefix)
        try:
            worker = StageWorker(hub.cfg, hub.store, ("normalize", "score"))
            stalls = threading.Thread(target=_stall_on_assignment, args=(worker, broker, 2.0))
            stalls.start()
            try:
                stats = worker.run(threading.Event(), idle_exit_s=0.3)
                assert kafka_bus.unread(worker.consumer) == 0
            finally:
                stalls.join()
                worker.close()
            # another group's consumer given the partition: everything unread once a fetch
            # told the high watermark (before that, it counts as one: starting, not caught up)
            topic = f"{prefix}.raw.lead.v1"
            other = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": prefix})
            try:
                other.assign([TopicPartition(topic, 0, 0)])
                assert kafka_bus.unread(other) in (1, len(messages))
                read = other.consume(1, 10.0)
                assert [m.offset() for m in read] == [0]
                assert kafka_bus.unread(other) == len(messages) - 1
            finally:
                other.close()
        finally:
            hub.close()
        assert stats.consumed == len(messages)
        _sent_once_in_order(url, broker, prefix)


def _stall_on_assignment(worker: StageWorker, broker: KafkaBroker, seconds: float) -> None:
    """Freeze the broker for ``seconds`` as soon as the worker has its partitions."""
    deadline = time.monotonic() + 60
    while not worker.stats.assigned and time.monotonic() < deadline:
        time.sleep(0.001)
    broker.pause()
    try:
        time.sleep(seconds)
    finally:
        broker.resume()


def test_a_worker_gone_with_messages_in_flight_leaves_nothing_unsent(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    """A worker that sent a batch from memory and committed its offsets without waiting, then
    vanished before its next batch awaited and marked them: the partition's next owner sends
    that batch's rows again (the one resend ADR-0018 allows, at most a batch) and every other
    row once, each subject's versions in order, with no second record or relay row."""
    prefix = f"fly{tmp_path.name[-4:]}"
    url, hub, messages = _one_partition(tmp_path, models_dir, kafka_broker, prefix)
    try:
        first = StageWorker(hub.cfg, hub.store, ("normalize", "score"))
        relay = first.relay
        assert relay is not None
        sizes = []
        while len(sizes) < 2:
            msgs = first.consumer.consume(60, 1.0)
            if msgs:
                first.process(msgs)  # the first reads back; the second goes from memory
                sizes.append(len(msgs))
        assert relay._in_flight
        assert not relay._unmarked
        in_flight = sum(len(batch.rows) for batch in relay._in_flight)
        relay.producer.flush(10)  # the broker has them; the worker dies before the mark
        # gone: leaving the group revokes the partition, but a dead worker neither awaits nor
        # marks what it sent, nor commits its offsets again
        relay.forget = lambda _scopes: None  # type: ignore[method-assign]
        first._commit_now = lambda _partitions=None: None  # type: ignore[method-assign]
        first.consumer.close()
        assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == in_flight
        stats = run_stage_worker(hub, ("normalize", "score"), threading.Event(), idle_exit_s=2.0)
    finally:
        hub.close()
    assert stats.consumed <= len(messages) - sizes[0]  # the batches before were committed
    records = rows_of(url, "SELECT count(*) FROM records")[0][0]
    assert rows_of(url, "SELECT count(*) FROM stage_relay")[0][0] == records
    assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == 0
    out = read_topic(kafka_broker.bootstrap, f"{prefix}.scored.lead.v1", expect=records)
    ids = [v["record_id"] for *_, v in out]
    assert len(set(ids)) == records  # nothing missing
    assert len(ids) - records <= in_flight  # resent: at most the batch in flight
    versions: dict[str, list[str]] = {}
    for _, _, key, v in out:
        if not versions.get(key) or versions[key][-1] != v["version"]:  # a resend repeats
            versions.setdefault(key, []).append(v["version"])
    assert all(vs == sorted(vs) for vs in versions.values())


def test_a_send_from_memory_that_fails_is_read_back_by_the_next_try_in_order_once(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: once a worker has sent everything its partition held, the next batch's
    rows go from memory (no read-back), their acknowledgements are awaited when the batch after
    is about to be written, and that write marks them.  When the broker never acknowledges
    them, the batch after fails before its write, and, read again, finds the scope unclean: the
    read-back sends the unacknowledged rows and its own, in id order.
    On SQLite the worker checkpoints the WAL in the background (here after every batch)."""
    monkeypatch.setattr(worker_module, "CHECKPOINT_EVERY", 1)
    prefix = f"mem{tmp_path.name[-4:]}"
    url, hub, messages = _one_partition(tmp_path, models_dir, kafka_broker, prefix)
    try:
        worker = StageWorker(hub.cfg, hub.store, ("normalize", "score"))
        relay = worker.relay
        assert relay is not None
        real_produce, real_await, real_written = relay._produce, relay._await, relay.send_written
        from_memory: list[int] = []

        def counted(rows: object, span: object = None) -> int:
            n = real_written(rows, span)  # type: ignore[arg-type]
            from_memory.append(n)
            return n

        relay.send_written = counted  # type: ignore[method-assign]

        def batch() -> list[object]:
            msgs: list[object] = []
            while not msgs:
                msgs = worker.consumer.consume(60, 1.0)
            return msgs

        db = tmp_path / "j.db"
        assert worker._wal is not None
        empty = db.stat().st_size
        first = batch()
        worker.process(first)  # a partition just received: read back (nothing was there)
        assert from_memory == []
        assert worker._wal.wait(30)
        assert db.stat().st_size > empty  # the batch's pages were copied from the WAL
        unsent = rows_of(url, UNPUBLISHED_RELAY)
        assert unsent[0][0] == 0

        def lost(_rows: object) -> None:  # the producer loses them: never on the topic
            return None

        def broker_gone() -> None:
            raise UnavailableError("injected: the broker never acknowledged them")

        relay._produce = lost  # type: ignore[method-assign]
        relay._await = broker_gone  # type: ignore[method-assign]
        worker.process(batch())  # written and sent from memory; not awaited yet
        assert len(from_memory) == 1
        assert from_memory[0] > 0
        relay._produce = real_produce  # type: ignore[method-assign]
        third = batch()
        with pytest.raises(UnavailableError):
            worker.process(third)  # the wait for the second batch's rows fails before its write
        assert not relay.clean  # so the next try reads the scope back
        assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == from_memory[0]  # none written by it
        relay._await = real_await  # type: ignore[method-assign]
        worker._rewind(third)  # type: ignore[arg-type]
        worker.process(batch())  # read back: every unsent row, in id order
        assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == 0
        worker.process(batch())  # clean again: from memory
        assert len(from_memory) == 2
        assert from_memory[1] > 0
        stats = worker.run(threading.Event(), idle_exit_s=2.0)
        worker.close()
    finally:
        hub.close()
    assert stats.consumed == len(messages)  # the failed try counts once, when it went through
    # an idle worker marks what it sent: nothing is left to send twice
    assert rows_of(url, UNPUBLISHED_RELAY)[0][0] == 0
    _sent_once_in_order(url, kafka_broker, prefix)


def test_the_score_role_validates_each_record_and_passes_on_its_canonical_form(
    tmp_path: Path, models_dir: Path, kafka_broker: KafkaBroker
) -> None:
    """A consumed canonical record is validated (with its message, in one pass; ADR-0031): one
    the model refuses is quarantined with its message's bytes; one it accepts goes on as the
    model serializes it (whitespace stripped, as ``normalize`` writes records)."""
    prefix = f"can{tmp_path.name[-4:]}"
    url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path, store=url, bootstrap=kafka_broker.bootstrap, models=models_dir, prefix=prefix
    )
    topic = f"{prefix}.canonical.lead.v1"
    kafka_broker.create_topic(topic, 1)
    lead = {
        "schema_version": "lead.v1",
        "external_id": "L1",
        "first_name": "Ivan",
        "last_name": "Dubois",
        "email": "ivan.dubois@cyberdyne.example.com",
        "company": "Cyberdyne Health Inc.",
        "country": "US",
        "lead_source": "cold_call",
        "employees": 3,
        "annual_revenue": "251000.00",
        "page_views": 5,
        "created_at": "2025-04-17T00:00:00Z",
    }
    records = {
        "L1": lead,
        "L2": {**lead, "external_id": "L2", "first_name": "  Ann  "},
        "L3": {**lead, "external_id": "L3", "favourite_colour": "green"},  # no such field
        "L4": {**lead, "external_id": "L4", "employees": "many"},  # not a number
    }
    messages = [
        (
            f"leads:{key}",
            encode(
                Item(
                    pipeline="leads",
                    record_id=f"leads:{key}",
                    key=key,
                    stream="inbox/a.csv",
                    position=i,
                    version=None,
                    provenance={"connector": "csv_file"},
                    body=orjson.dumps(record),
                    source_key=key,
                    entity="lead",
                    schema_version="lead.v1",
                ),
                "canonical",
            ),
        )
        for i, (key, record) in enumerate(records.items(), 1)
    ]
    produce(kafka_broker.bootstrap, topic, messages)
    hub = Hub(load_config(cfg))
    try:
        stats = run_stage_worker(hub, ("score",), threading.Event(), idle_exit_s=2.0)
    finally:
        hub.close()
    assert stats.consumed == 4
    held = rows_of(
        url, "SELECT record_key, stage, error_code, payload FROM quarantine ORDER BY record_key"
    )
    assert [(k, s, c) for k, s, c, _ in held] == [
        ("leads:L3", "score", "stage_message"),
        ("leads:L4", "score", "stage_message"),
    ]
    assert [bytes(p) for *_, p in held] == [messages[2][1], messages[3][1]]
    scored = read_topic(kafka_broker.bootstrap, f"{prefix}.scored.lead.v1", expect=2)
    out = {v["record_id"]: v["record"] for *_, v in scored}
    assert sorted(out) == ["leads:L1", "leads:L2"]
    assert out["leads:L2"]["first_name"] == "Ann"
    assert out["leads:L1"] == lead
