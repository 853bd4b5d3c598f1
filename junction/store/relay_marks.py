"""The stage relay's per-scope watermarks (ADR-0030).

A relay row is *published* when its ``published_at`` is set (a row marked on its own) or when
its id is at most its scope's ``published_through`` (a watermark).  Every reader of "what is left
to send" goes through :func:`unpublished`, so the two ways of marking never disagree.

A watermark may only move over rows that were all sent: :func:`advance` is given the dedupe
keys of the rows a worker sent, reads its scope's unpublished rows above the current mark, and
moves the mark only when every one of them is among those sent.  Anything else there (a row a
former owner of the partition wrote, and nobody sent) makes it mark the sent rows one by one
instead, and leaves the watermark where it was.  Ids only grow (AUTOINCREMENT on SQLite, a
sequence on PostgreSQL), and on SQLite a write transaction holds the database's lock from its
first write, so a row committed later has a larger id than any it could be hidden under.  On
PostgreSQL a sequence value can commit after a larger one: the relay marks rows one by one
there (``uses_watermarks``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    and_,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t
from junction.store.engine import raw_cursor

_MARK_CHUNK = 1000  # dedupe keys in one statement


def uses_watermarks(dialect: str) -> bool:
    """Whether the relay marks rows sent from memory by moving their scope's watermark."""
    return dialect == "sqlite"


def unpublished(relay: Any = t.stage_relay) -> ColumnElement[bool]:
    """The relay rows not published yet: no ``published_at`` and above their scope's mark."""
    marks = t.stage_relay_marks.c
    through = select(marks.published_through).where(marks.scope == relay.c.scope).scalar_subquery()
    return and_(relay.c.published_at.is_(None), relay.c.id > func.coalesce(through, 0))


def mark_rows(conn: Connection, column: Any, values: Sequence[Any]) -> None:
    """Mark published now the relay rows whose ``column`` is in ``values``, one by one."""
    now = time.time()
    for i in range(0, len(values), _MARK_CHUNK):
        conn.execute(
            update(t.stage_relay)
            .where(column.in_(values[i : i + _MARK_CHUNK]))
            .values(published_at=now)
        )


# built once: a batch moves up to one watermark per partition it read (with the scope fixed,
# SQLite seeks the pending index to the rows above the mark)
_ABOVE_MARK = select(t.stage_relay.c.id, t.stage_relay.c.dedupe).where(
    t.stage_relay.c.scope == bindparam("scope"), unpublished()
)
_SET_MARK: dict[str, Executable] = {}
# the same query, compiled once for SQLite's own cursor (watermarks are SQLite's): a batch reads
# back as many rows as it sent, and SQLAlchemy's result rows cost more than the query
_ABOVE_SQLITE = _ABOVE_MARK.compile(dialect=sqlite_dialect())
_ABOVE_SQLITE_SQL = str(_ABOVE_SQLITE)
_ABOVE_SQLITE_ORDER = tuple(_ABOVE_SQLITE.positiontup or ())


def _above_mark(conn: Connection, scope: str) -> list[tuple[int, str]]:
    """``(id, dedupe)`` of the unpublished rows of ``scope`` above its watermark."""
    if conn.dialect.name != "sqlite":
        return [(row[0], row[1]) for row in conn.execute(_ABOVE_MARK, {"scope": scope})]
    values = {**_ABOVE_SQLITE.params, "scope": scope}
    with raw_cursor(conn) as cur:
        cur.execute(_ABOVE_SQLITE_SQL, [values[name] for name in _ABOVE_SQLITE_ORDER])
        return cast("list[tuple[int, str]]", cur.fetchall())


def advance(conn: Connection, scope: str, sent: set[str]) -> bool:
    """Mark published the rows of ``scope`` whose dedupe keys are ``sent``.

    Moves the scope's watermark over them when they are all its unpublished rows above it;
    otherwise marks them one by one.  Returns whether the watermark moved.
    """
    above = _above_mark(conn, scope)
    if not above:
        return False
    ids, dedupes = zip(*above, strict=True)
    if not sent.issuperset(dedupes):
        mark_rows(conn, t.stage_relay.c.dedupe, list(sent))
        return False
    conn.execute(
        _set_mark(conn.dialect.name),
        {"scope": scope, "published_through": max(ids), "marked_at": time.time()},
    )
    return True


def _set_mark(dialect: str) -> Executable:
    """The upsert that moves a scope's watermark (never back)."""
    stmt = _SET_MARK.get(dialect)
    if stmt is None:
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        table = t.stage_relay_marks.c
        ins = insert(t.stage_relay_marks)
        newer = ins.excluded.published_through > table.published_through
        stmt = _SET_MARK[dialect] = ins.on_conflict_do_update(
            index_elements=[table.scope],
            set_={
                "published_through": case(
                    (newer, ins.excluded.published_through), else_=table.published_through
                ),
                "marked_at": ins.excluded.marked_at,
            },
        )
    return stmt


def advance_all(conn: Connection, sent: Iterable[tuple[str, str]]) -> None:
    """:func:`advance` for each scope of ``sent`` (``(scope, dedupe)`` pairs)."""
    by_scope: dict[str, set[str]] = {}
    for scope, dedupe in sent:
        by_scope.setdefault(scope, set()).add(dedupe)
    for scope, dedupes in by_scope.items():
        advance(conn, scope, dedupes)
