"""Shares take turns writing to a SQLite file, prepare ahead while another writes, and
checkpoint the WAL in the background."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from connectors.base import RawBatch
from junction.pipeline.prepare import PreparedBatch
from junction.pipeline.workers import (
    CHECKPOINT_EVERY,
    WRITE_BACKLOG,
    BatchDone,
    Share,
    ShareContext,
    ShareEnd,
    WriteTurn,
    run_share,
)


def test_one_process_at_a_time_has_the_turn(tmp_path: Path) -> None:
    a = WriteTurn(str(tmp_path / "hub.db"))
    b = WriteTurn(str(tmp_path / "hub.db"))  # another open file: as another process
    try:
        assert a.try_take()
        assert not b.try_take()
        a.give()
        assert b.try_take()
        assert not a.try_take()
        b.give()
    finally:
        a.close()
        b.close()


def test_only_a_sqlite_file_gets_a_turn_lock(tmp_path: Path) -> None:
    turn = WriteTurn.for_store(f"sqlite:///{tmp_path / 'hub.db'}")
    assert turn is not None
    assert turn.path == f"{tmp_path / 'hub.db'}-shares.lock"
    turn.close()
    assert WriteTurn.for_store("sqlite://") is None
    assert WriteTurn.for_store("sqlite:///:memory:") is None
    assert WriteTurn.for_store("postgresql+psycopg://postgres@127.0.0.1:5432/test") is None


class _Source:
    """Three batches of one part."""

    name = "fake"

    def read_part(self, plan: Any, part: int, cursor: Any) -> Iterator[RawBatch]:
        for j in range(3):
            yield RawBatch("s", [{"n": j}], [f"k{j}"], [j + 1], {"row": j + 1})


class _Store:
    def __init__(self) -> None:
        self.written: list[int] = []

    def write_batch(self, *, records: list[Any], **_: Any) -> tuple[int, int]:
        self.written.append(records[0][0])
        return 0, 0

    def privacy(self) -> None:
        """No encryption at rest in this store."""
        return None

    def preseal(self, records: Any, deliveries: Any, personal: Any = None) -> None:
        """Nothing to seal ahead of the write turn."""
        assert personal is None  # nothing was split for a store that does not encrypt
        return None


class _Preparer:
    """Releases the other process's turn while preparing the backlog's last batch."""

    def __init__(self, store: _Store, other: WriteTurn) -> None:
        self.store, self.other = store, other
        self.written_when_prepared: list[list[int]] = []

    def prepare(self, batch: RawBatch, run_id: int, *, split_personal: bool) -> PreparedBatch:
        assert not split_personal
        n = batch.records[0]["n"]
        self.written_when_prepared.append(list(self.store.written))
        if n == WRITE_BACKLOG - 1:
            self.other.give()  # the other process finishes its write
        out = PreparedBatch(batch.stream, batch.cursor, len(batch))
        out.records.append((n,))
        return out


def test_a_share_prepares_ahead_while_another_process_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "hub.db")
    other, mine = WriteTurn(db), WriteTurn(db)
    assert other.try_take()  # another process is writing
    store = _Store()
    preparer = _Preparer(store, other)
    ctx = ShareContext("p", cast(Any, preparer), cast(Any, store), cast(Any, _Source()), mine)
    reports: list[BatchDone | ShareEnd] = []
    try:
        run_share(ctx, reports.append, "s", None, Share(0, 0, None), object(), 1, "t")
        assert other.try_take()  # the share gave the turn back
    finally:
        other.close()
        mine.close()
    # nothing was written while the other process held the turn; then all, in order
    assert preparer.written_when_prepared == [[], [], [0, 1]]
    assert store.written == [0, 1, 2]
    assert [(r.index, r.cursor) for r in reports if isinstance(r, BatchDone)] == [
        (0, {"row": 1}),
        (1, {"row": 2}),
        (2, {"row": 3}),
    ]
    end = reports[-1]
    assert isinstance(end, ShareEnd)
    assert end.batches == 3
    assert end.error is None


def test_committed_batches_are_checkpointed_in_the_background(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as share connections nearly are
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 2000)
    conn.commit()
    before = db.stat().st_size  # the rows are in the WAL only
    turn = WriteTurn(str(db))
    try:
        for _ in range(CHECKPOINT_EVERY - 1):
            turn.committed()
        assert turn.wait_checkpoint(0)
        assert db.stat().st_size == before  # not due yet
        turn.committed()
        assert turn.wait_checkpoint(30)
    finally:
        turn.close()
    assert db.stat().st_size > before + 2000 * 500  # copied into the database file
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    conn.close()
