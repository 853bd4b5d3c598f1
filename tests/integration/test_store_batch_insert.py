"""Batch inserts: grouped multi-row statements store exactly what row-by-row inserts store."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction.store import tables as t
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


def test_a_batch_with_a_duplicate_key_keeps_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    store = Store.open(url)
    try:
        rows = [("r1", "1", "m", 0.5, "B", "[]", "production", 1.0)] * 40
        rows = [*rows, ("r1", "1", "m", 0.9, "A", "[]", "production", 1.0)]
        with store.begin() as conn:
            store.insert_many(conn, t.scores, SCORE_COLS, rows)
    finally:
        store.close()
    assert rows_of(url, "SELECT record_id, value, grade FROM scores") == [("r1", 0.5, "B")]
