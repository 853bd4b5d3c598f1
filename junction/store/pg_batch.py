"""A batch's inserts and marks on PostgreSQL, as few statements with numbered parameters.

psycopg's ``executemany`` sends one statement a row (pipeline mode).  Measured on this project's
machine, a batch of 500 score rows and 500 relay rows cost ~50 us of the client's CPU a record
that way, most of it psycopg's Python around each row, while the server waited for the next one.
One ``INSERT ... VALUES (...), (...)`` of many rows is no better through psycopg's ordinary
cursor: it rewrites ``%s`` placeholders to ``$n`` with a regular expression, and caches the
result only for short queries, so a long statement is parsed again on every call.  Through a
``RawCursor`` the statement goes as written, with ``$n`` placeholders: **~12 us a record** for
the same rows in statements of 100, and the server's own work falls too (one statement to plan
and execute instead of a hundred).

A batch is cut into statements of :data:`GROUP` rows and the rest into the sizes of its binary
digits (64, 32, ... 1), so a connection prepares at most eight statements a table and column
list, whatever the batch sizes are (psycopg prepares a statement the fifth time it runs).

Marking relay rows published is one ``UPDATE ... WHERE column = ANY($2)``: one statement text
for any number of rows, where SQLAlchemy's ``IN`` renders one placeholder a value (~15 us of
client CPU a row, against ~3 this way).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Integer, Table

from junction.store.engine import raw_cursor

GROUP = 100  # rows a statement (measured: 100, 250 and 500 alike; 25 costs ~60 % more)
_REST = (64, 32, 16, 8, 4, 2, 1)


def numbered_cursor(conn: Connection) -> AbstractContextManager[Any]:
    """psycopg's ``RawCursor`` on ``conn``'s connection, in its transaction: ``$n`` parameters,
    the query sent as written.  Closed on the way out."""
    import psycopg  # PostgreSQL stores only: a SQLite process never loads it

    return raw_cursor(conn, psycopg.RawCursor)


def statement_sizes(n: int) -> Iterator[int]:
    """The row counts of the statements that insert ``n`` rows: ``GROUP``s, then the rest's
    binary digits, largest first (``230`` → ``100, 100, 16, 8, 4, 2``)."""
    while n >= GROUP:
        yield GROUP
        n -= GROUP
    for size in _REST:
        if n >= size:
            yield size
            n -= size


class NumberedInserts:
    """``INSERT ... ON CONFLICT DO NOTHING`` statements of many rows, built once each."""

    def __init__(self) -> None:
        """Nothing is built until a batch needs it."""
        self._sql: dict[tuple[str, tuple[str, ...], int], str] = {}

    def sql(self, table: Table, cols: tuple[str, ...], rows: int) -> str:
        """The statement inserting ``rows`` rows of ``cols`` (``$1``... in row order)."""
        key = (table.name, cols, rows)
        sql = self._sql.get(key)
        if sql is None:
            width = len(cols)
            values = ", ".join(
                "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                for r in range(rows)
            )
            # identifiers from our own table metadata; every value is a bound parameter
            sql = self._sql[key] = (
                f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES {values} "  # noqa: S608
                "ON CONFLICT DO NOTHING"
            )
        return sql

    def insert(self, cur: Any, table: Table, cols: tuple[str, ...], rows: Sequence[Any]) -> int:
        """Insert ``rows`` through ``cur`` (a :func:`numbered_cursor`); return how many went in
        (the others' keys existed).  Every row holds one value for each of ``cols``: the
        caller checked (a longer row's values would land in the next row's columns).
        """
        inserted = at = 0
        for size in statement_sizes(len(rows)):
            cur.execute(
                self.sql(table, cols, size), list(chain.from_iterable(rows[at : at + size]))
            )
            inserted += max(cur.rowcount, 0)
            at += size
        return inserted


def mark_published(
    conn: Connection, table: Table, column: str, values: Sequence[Any], now: float
) -> int:
    """Set ``published_at = now`` on the rows of ``table`` whose ``column`` is in ``values``, in
    one statement; return how many rows it changed."""
    with numbered_cursor(conn) as cur:
        cur.execute(_mark_sql(table, column), [now, list(values)])
        return int(max(cur.rowcount, 0))


@functools.cache
def _mark_sql(table: Table, column: str) -> str:
    """``mark_published``'s statement; the values are one array parameter."""
    col = table.c[column]  # a column of our own metadata, or KeyError
    array = "bigint[]" if isinstance(col.type, Integer) else "text[]"
    # identifiers from our own table metadata; every value is a bound parameter
    return f"UPDATE {table.name} SET published_at = $1 WHERE {col.name} = ANY($2::{array})"  # noqa: S608
