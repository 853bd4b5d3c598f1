"""The stage relay's per-scope watermarks (ADR-0030), on the real stores and broker.

- rows a worker sent from memory are marked by one watermark row per scope on SQLite (no update
  of each row), and one by one on PostgreSQL; either way nothing of them is left to send, and
  the rows written after them are;
- a row in the scope that nobody sent (a former owner wrote it) keeps the watermark where it
  was: the sent rows are marked one by one, and the next read-back sends that row;
- the span of ids a batch's rows took (``written_span``: SQLite, one transaction, all new)
  decides the same as their dedupe keys, and the relay hands it on only while one batch's rows
  are all it has to mark;
- rows under a watermark are pruned once past the retention (from when they were written),
  never before, and an unsent row never;
- on SQLite a deleted newest row's id never comes back (it would be hidden under a watermark);
- migration 0013 keeps a store's relay rows, and its downgrade settles the watermarks.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from alembic import command
from alembic.config import Config
from confluent_kafka import Producer
from sqlalchemy import Engine, delete, select, text

from junction.pipeline.config import BusConfig
from junction.pipeline.stages.bus import make_producer
from junction.pipeline.stages.relay import Relay, RelayRow, Span, insert_rows
from junction.store import tables as t
from junction.store.engine import _INI, _sqlite_migration_engine, make_engine, open_store_engine
from junction.store.relay_marks import advance, unpublished, written_span
from junction.store.repo import Store
from tests.fakes.kafka_broker import KafkaBroker
from tests.stages.support import read_topic

pytestmark = pytest.mark.timeout(120)
HOUR = 3600.0


def _row(scope: str, n: int, *, at: float | None = None, topic: str = "out.t") -> RelayRow:
    value = orjson.dumps({"record_id": f"{scope}#{n}", "n": n})
    created = time.time() if at is None else at
    return (scope, topic, f"k{n}", value, '{"junction-stage":"scored"}', f"{scope}|{n}", created)


def _store(url: str) -> Store:
    return Store(open_store_engine(url))


def _relay(store: Store, producer: Producer | None = None) -> Relay:
    # a producer that never connects: these relays only mark, count and prune
    producer = producer or Producer({"bootstrap.servers": "127.0.0.1:9"})
    return Relay(store, producer, timeout_s=10.0)


def _write(store: Store, rows: list[RelayRow]) -> Span | None:
    """Insert ``rows`` (all new) in one transaction; return the ids they took (SQLite)."""
    with store.begin() as conn:
        assert insert_rows(store, conn, rows)
        return written_span(conn, len(rows))


def _unsent(store: Store) -> list[str]:
    c = t.stage_relay.c
    with store.begin() as conn:
        return [
            str(d) for (d,) in conn.execute(select(c.dedupe).where(unpublished()).order_by(c.id))
        ]


def _marks(store: Store) -> dict[str, int]:
    m = t.stage_relay_marks.c
    with store.begin() as conn:
        return {str(s): int(n) for s, n in conn.execute(select(m.scope, m.published_through))}


def _ids(store: Store, scope: str) -> list[int]:
    c = t.stage_relay.c
    with store.begin() as conn:
        return [
            int(i) for (i,) in conn.execute(select(c.id).where(c.scope == scope).order_by(c.id))
        ]


def _marked_one_by_one(store: Store) -> int:
    c = t.stage_relay.c
    with store.begin() as conn:
        return len(conn.execute(select(c.id).where(c.published_at.is_not(None))).all())


def _sent(rows: list[RelayRow]) -> list[tuple[str, str]]:
    return [(r[0], r[5]) for r in rows]


def test_rows_sent_from_memory_are_marked_by_one_watermark_a_scope(store_url: str) -> None:
    store = _store(store_url)
    relay = _relay(store)
    a = [_row("in:0", n) for n in range(5)]
    b = [_row("in:1", n) for n in range(3)]
    _write(store, a + b)
    assert relay.pending(["in:0", "in:1"]) == 8
    with store.begin() as conn:
        relay.mark_in(conn, _sent(a + b))
    assert _unsent(store) == []
    assert relay.pending(["in:0", "in:1"]) == 0
    if store.dialect == "sqlite":
        assert _marks(store) == {"in:0": _ids(store, "in:0")[-1], "in:1": _ids(store, "in:1")[-1]}
        assert _marked_one_by_one(store) == 0  # not one row was updated
    else:  # a sequence value can commit after a larger one: each row is marked
        assert _marks(store) == {}
        assert _marked_one_by_one(store) == 8
    later = [_row("in:0", n) for n in range(5, 7)]
    _write(store, later)
    assert _unsent(store) == [r[5] for r in later]  # above the watermark: still to send
    assert relay.pending(["in:0"]) == 2
    assert relay.pending(["in:1"]) == 0
    store.engine.dispose()


def test_advance_reads_the_rows_above_the_watermark_alike_on_each_backend(store_url: str) -> None:
    """SQLite reads them through its own cursor, other backends through SQLAlchemy: the same
    rows decide whether the watermark moves, by dedupe keys or by a span of ids."""
    store = _store(store_url)
    ours = [_row("in:0", n) for n in range(4)]
    _write(store, ours)
    with store.begin() as conn:
        assert not advance(conn, "in:0", {r[5] for r in ours[:3]})  # one above it is not ours
    assert _marks(store) == {}
    assert _unsent(store) == [ours[3][5]]  # the three sent were marked one by one
    with store.begin() as conn:
        assert advance(conn, "in:0", {ours[3][5]})
        assert not advance(conn, "in:9", {"nothing"})  # a scope with no rows
    assert _marks(store) == {"in:0": _ids(store, "in:0")[-1]}
    assert _unsent(store) == []
    # the same by a span of ids (what a SQLite worker hands on), asked through each path
    later = [_row("in:0", n) for n in range(4, 7)]
    _write(store, later)
    ids = _ids(store, "in:0")[4:]
    with store.begin() as conn:  # the first of them lies outside the span of the other two
        assert not advance(conn, "in:0", {r[5] for r in later[1:]}, (ids[1], ids[2]))
    assert _unsent(store) == [later[0][5]]
    with store.begin() as conn:
        assert advance(conn, "in:0", {later[0][5]}, (ids[0], ids[0]))
        assert not advance(conn, "in:9", {"nothing"}, (ids[0], ids[2]))
    assert _marks(store) == {"in:0": ids[0]}
    assert _unsent(store) == []
    store.engine.dispose()


def test_written_span_holds_the_ids_the_rows_just_inserted_took(store_url: str) -> None:
    """Grouped statements and the rest one by one (more than one group of 32): one span, the
    ids of exactly those rows, whatever was written before."""
    store = _store(store_url)
    _write(store, [_row("in:1", n) for n in range(5)])
    batch = [_row("in:0", n) for n in range(70)] + [_row("in:1", n) for n in range(5, 12)]
    span = _write(store, batch)
    if store.dialect != "sqlite":  # ids from a sequence may commit out of order: no span
        assert span is None
        store.engine.dispose()
        return
    c = t.stage_relay.c
    with store.begin() as conn:
        ids = dict(conn.execute(select(c.dedupe, c.id)).all())
    taken = sorted(ids[r[5]] for r in batch)
    assert span == (taken[0], taken[-1])
    assert taken == list(range(taken[0], taken[-1] + 1))
    with store.begin() as conn:
        assert written_span(conn, 0) is None  # nothing inserted
    store.engine.dispose()


@pytest.mark.parametrize("by_span", [False, True], ids=["by-dedupe", "by-span"])
def test_a_span_moves_the_watermarks_as_the_dedupe_keys_do(tmp_path: Path, by_span: bool) -> None:
    """A scope whose rows above the mark are all in the span moves; one that holds a row
    written after it (unsent) keeps its mark, and the sent rows are marked one by one."""
    store = _store(f"sqlite:///{tmp_path / 'j.db'}")
    relay = _relay(store)
    first = [_row("in:0", n) for n in range(4)] + [_row("in:1", n) for n in range(3)]
    span = _write(store, first)
    assert span is not None
    second = [_row("in:0", n) for n in range(4, 6)]
    _write(store, second)
    with store.begin() as conn:
        relay.mark_in(conn, _sent(first), span if by_span else None)
    assert _marks(store) == {"in:1": _ids(store, "in:1")[-1]}
    assert _marked_one_by_one(store) == 4  # in:0's sent rows, under the second batch's
    assert _unsent(store) == [r[5] for r in second]
    third = [_row("in:0", n) for n in range(6, 9)]
    span = _write(store, third)
    with store.begin() as conn:  # the second batch is still unsent: in:0 cannot move
        relay.mark_in(conn, _sent(third), span if by_span else None)
    assert _unsent(store) == [r[5] for r in second]
    assert _marked_one_by_one(store) == 4 + 3
    with store.begin() as conn:  # the second batch sent at last: all in:0 holds above it
        relay.mark_in(conn, _sent(second), None)
    assert _unsent(store) == []
    assert _marks(store) == {"in:0": _ids(store, "in:0")[5], "in:1": _ids(store, "in:1")[-1]}
    store.engine.dispose()


def test_the_relay_hands_on_a_span_only_while_one_batch_is_to_be_marked(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    topic, store, producer, relay = _on_broker(tmp_path, kafka_broker, partitions=2)
    one = [_row("in:0", n, topic=topic) for n in range(3)]
    span = _write(store, one)
    assert relay.send_written(one, span) == 3
    marks = relay.settled()
    assert marks == (_sent(one), span)
    with store.begin() as conn:
        relay.mark_in(conn, marks.rows, marks.span)
    relay.marked(len(marks.rows))
    assert relay.settled() == ([], None)
    assert _unsent(store) == []
    two = [[_row(f"in:{b}", n, topic=topic) for n in range(3, 5)] for b in (0, 1)]
    for batch in two:
        relay.send_written(batch, _write(store, batch))
    marks = relay.settled()  # two batches: their spans may hold other workers' rows between
    assert marks == (_sent(two[0] + two[1]), None)
    relay.flush_marks()  # marked by their dedupe keys
    assert relay.settled() == ([], None)
    assert _unsent(store) == []
    assert _marks(store) == {"in:0": _ids(store, "in:0")[-1], "in:1": _ids(store, "in:1")[-1]}
    out = read_topic(kafka_broker.bootstrap, topic, expect=7, timeout_s=30)
    assert sorted(v["record_id"] for *_, v in out) == sorted(
        f"{r[0]}#{r[5].split('|')[1]}" for r in one + two[0] + two[1]
    )
    producer.flush(5)
    store.engine.dispose()


@pytest.mark.parametrize("by_span", [False, True], ids=["by-dedupe", "by-span"])
@pytest.mark.parametrize("before", [True, False], ids=["written-before", "written-after"])
def test_a_row_nobody_sent_keeps_the_watermark_and_goes_out_on_the_next_read_back(
    tmp_path: Path, kafka_broker: KafkaBroker, before: bool, by_span: bool
) -> None:
    topic, store, producer, relay = _on_broker(tmp_path, kafka_broker, partitions=1)
    ours = [_row("in:0", n, topic=topic) for n in range(1, 4)]
    stray = _row("in:0", 0 if before else 9, topic=topic)  # a former owner's row, never sent
    span = None
    if not by_span:
        _write(store, [stray, *ours] if before else [*ours, stray])
    elif before:  # our batch in a transaction of its own, the stray row in another
        _write(store, [stray])
        span = _write(store, ours)
    else:
        span = _write(store, ours)
        _write(store, [stray])
    if by_span:
        mine = _ids(store, "in:0")[1:] if before else _ids(store, "in:0")[:3]
        assert span == (mine[0], mine[-1])
    with store.begin() as conn:
        relay.mark_in(conn, _sent(ours), span)
    assert _marks(store) == {}  # the watermark did not move over the stray row
    assert _unsent(store) == [stray[5]]
    assert _marked_one_by_one(store) == 3
    assert relay.publish(["in:0"]) == 1
    out = read_topic(kafka_broker.bootstrap, topic, expect=1, timeout_s=30)
    assert [v["record_id"] for *_, v in out] == ["in:0#" + stray[5].split("|")[1]]
    assert _unsent(store) == []
    producer.flush(5)
    store.engine.dispose()


def _bus(broker: KafkaBroker) -> BusConfig:
    return BusConfig(bootstrap_servers=broker.bootstrap)


def _on_broker(
    tmp_path: Path, broker: KafkaBroker, *, partitions: int
) -> tuple[str, Store, Producer, Relay]:
    """A new topic, a SQLite store and a relay whose producer sends to the broker."""
    topic = f"marks-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions)
    store = _store(f"sqlite:///{tmp_path / 'j.db'}")
    producer = make_producer(_bus(broker))
    return topic, store, producer, _relay(store, producer)


def test_rows_under_a_watermark_are_pruned_after_the_retention_only(store_url: str) -> None:
    store = _store(store_url)
    relay = _relay(store)
    old = time.time() - 2 * HOUR
    marked_old = [_row("in:0", n, at=old) for n in range(3)]
    marked_new = [_row("in:0", n) for n in range(3, 5)]
    unsent_old = _row("in:1", 0, at=old)
    _write(store, [*marked_old, *marked_new, unsent_old])
    with store.begin() as conn:
        relay.mark_in(conn, _sent(marked_old + marked_new))
    if store.dialect != "sqlite":  # marked one by one, now: the retention counts from now
        assert relay.prune(older_than_s=HOUR) == 0
        store.engine.dispose()
        return
    # a watermark's rows count from when they were written (sent within seconds of it)
    assert relay.prune(older_than_s=HOUR) == 3
    with store.begin() as conn:
        left = {str(d) for (d,) in conn.execute(select(t.stage_relay.c.dedupe))}
    assert left == {r[5] for r in [*marked_new, unsent_old]}
    assert _unsent(store) == [unsent_old[5]]  # an unsent row is never pruned
    store.engine.dispose()


def test_sqlite_never_reuses_the_id_of_a_deleted_newest_row(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'j.db'}")
    relay = _relay(store)
    rows = [_row("in:0", n) for n in range(3)]
    _write(store, rows)
    with store.begin() as conn:
        relay.mark_in(conn, _sent(rows))
    newest = _ids(store, "in:0")[-1]
    assert _marks(store) == {"in:0": newest}
    with store.begin() as conn:  # the newest row goes (pruned, or erased)
        conn.execute(delete(t.stage_relay).where(t.stage_relay.c.id == newest))
    fresh = _row("in:0", 3)
    _write(store, [fresh])
    assert _ids(store, "in:0")[-1] > newest  # a reused id would sit under the watermark
    assert _unsent(store) == [fresh[5]]
    store.engine.dispose()


def _migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = Config(str(_INI))
    with _sqlite_migration_engine(engine).begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_migration_0013_keeps_the_relay_rows_and_its_downgrade_settles_the_marks(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    engine = make_engine(url)
    _migrate_to(engine, "0012")
    rows = [_row("in:0", n) for n in range(4)]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO stage_relay (scope, topic, key, value, headers, dedupe, created_at, "
                "published_at) VALUES (:s, :t, :k, :v, :h, :d, :c, NULL)"
            ),
            [dict(zip("stkvhdc", r, strict=True)) for r in rows],
        )
    before = _ids(Store(engine), "in:0")
    _migrate_to(engine, "head")
    store = Store(engine)
    assert _ids(store, "in:0") == before
    with engine.begin() as conn:
        ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'stage_relay'"))
        assert "AUTOINCREMENT" in ddl.scalar_one()
    with store.begin() as conn:
        _relay(store).mark_in(conn, _sent(rows[:3]))
    assert _unsent(store) == [rows[3][5]]
    _migrate_to(engine, "0012", down=True)
    with engine.begin() as conn:
        unsent = conn.execute(
            text("SELECT dedupe FROM stage_relay WHERE published_at IS NULL")
        ).all()
    assert [u[0] for u in unsent] == [rows[3][5]]  # the watermarked rows stay published
    engine.dispose()
