"""Batch inserts: multi-row statements (SQLite and PostgreSQL) store exactly what row-by-row
inserts store; relay rows are marked by one statement."""

from __future__ import annotations

import pytest

from junction.core.errors import InternalError
from junction.pipeline.stages.relay import RELAY_COLS
from junction.store import tables as t
from junction.store.pg_batch import GROUP, statement_sizes
from junction.store.relay_marks import mark_rows
from junction.store.repo import RECORD_COLS, SCORE_COLS, Store
from tests.integration.helpers import rows_of


def _records(n: int, *, shared_time: bool = True) -> list[tuple]:
    now = 1_700_000_000.5
    equal_copy = "".join(["pi", "pe"])  # equal to "pipe", but another object
    return [
        (
            f"p:k{i}",
            "pipe" if i % 50 else equal_copy,
            "lead",
            "csv_file",
            f"k{i}",
            "lead.v1",
            f'{{"n":{i}}}',
            f'{{"position":{i}}}',
            None if i % 3 else 7,  # a column that differs within the batch
            now if shared_time else now + i,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [0, 5, 32, 100, 333])
def test_grouped_inserts_store_every_row_once(store_url: str, n: int) -> None:
    store = Store.open(store_url)
    try:
        rows = _records(n)
        with store.begin() as conn:
            store.insert_many(conn, t.records, RECORD_COLS, rows)
        with store.begin() as conn:  # a replay: every row is ignored
            store.insert_many(conn, t.records, RECORD_COLS, rows[::-1])
        with store.begin() as conn:
            store.insert_many(conn, t.records, RECORD_COLS, _records(n + 40, shared_time=False))
    finally:
        store.close()
    got = rows_of(store_url, f"SELECT {', '.join(RECORD_COLS)} FROM records ORDER BY source_key")
    want = sorted(rows + _records(n + 40, shared_time=False)[n:], key=lambda r: r[4])
    assert got == want


def test_a_batch_with_a_duplicate_key_keeps_the_first(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        rows = [("r1", "1", "m", 0.5, "B", "[]", "production", 1.0)] * 140
        rows = [*rows, ("r1", "1", "m", 0.9, "A", "[]", "production", 1.0)]
        with store.begin() as conn:
            assert store.insert_many(conn, t.scores, SCORE_COLS, rows) == 1
    finally:
        store.close()
    assert rows_of(store_url, "SELECT record_id, value, grade FROM scores") == [("r1", 0.5, "B")]


def test_values_of_every_column_type_round_trip(store_url: str) -> None:
    """Text with quotes and dollar signs, bytes with NULs, floats, integers and NULLs."""
    store = Store.open(store_url)
    rows = [
        (
            f"in:{i % 3}",
            "out.topic",
            f"k$1'{i}\"",
            bytes([0, 255, i % 256]) + b"$2",
            None if i % 2 else '{"h": "$3"}',
            f"out|in:{i % 3}:{i}",
            1_700_000_000.25 + i,
        )
        for i in range(117)
    ]
    try:
        with store.begin() as conn:
            assert store.insert_many(conn, t.stage_relay, RELAY_COLS, rows) == 117
    finally:
        store.close()
    got = rows_of(store_url, f"SELECT {', '.join(RELAY_COLS)} FROM stage_relay ORDER BY id")
    assert [(*r[:3], bytes(r[3]), *r[4:]) for r in got] == rows


@pytest.mark.parametrize("n", [2, 300])  # one statement a row, and grouped statements
def test_a_row_that_does_not_match_its_columns_writes_nothing(store_url: str, n: int) -> None:
    """A longer row's extra value would be dropped (SQLite's grouped statements) or land in
    the next row's columns (PostgreSQL's numbered ones): the batch is refused whole."""
    store = Store.open(store_url)
    good = [(f"r{i}", "1", "m", 0.5, "B", "[]", "production", 1.0) for i in range(n)]
    try:
        for bad in [(*good[-1], "extra"), good[-1][:7]]:
            with (
                pytest.raises(InternalError, match="does not match its columns"),
                store.begin() as conn,
            ):
                store.insert_many(conn, t.scores, SCORE_COLS, [*good[:-1], bad])
    finally:
        store.close()
    assert rows_of(store_url, "SELECT record_id FROM scores") == []


@pytest.mark.parametrize("n", [0, 1, 99, 100, 101, 230, 500, 2047])
def test_a_batch_is_cut_into_few_statement_sizes(n: int) -> None:
    sizes = list(statement_sizes(n))
    assert sum(sizes) == n
    assert sizes == sorted(sizes, reverse=True)
    assert set(sizes) <= {GROUP, 64, 32, 16, 8, 4, 2, 1}
    assert len(sizes) - sizes.count(GROUP) <= 7  # the rest: one statement a binary digit


@pytest.mark.parametrize("column", ["dedupe", "id"])
def test_marking_relay_rows_sets_only_theirs(store_url: str, column: str) -> None:
    store = Store.open(store_url)
    rows = [
        (f"in:{i % 2}", "out", f"k{i}", b"{}", None, f"out|in:{i % 2}:{i}", 1.0) for i in range(9)
    ]
    try:
        with store.begin() as conn:
            store.insert_many(conn, t.stage_relay, RELAY_COLS, rows)
        ids = [r[0] for r in rows_of(store_url, "SELECT id FROM stage_relay ORDER BY id")]
        chosen = ids[2:7:2] if column == "id" else [rows[i][5] for i in (2, 4, 6)]
        with store.begin() as conn:
            mark_rows(conn, getattr(t.stage_relay.c, column), chosen)
    finally:
        store.close()
    marked = rows_of(
        store_url, "SELECT dedupe FROM stage_relay WHERE published_at IS NOT NULL ORDER BY id"
    )
    assert [r[0] for r in marked] == [rows[i][5] for i in (2, 4, 6)]
