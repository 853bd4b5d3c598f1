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

A worker that wrote a batch's rows itself, all new, in one SQLite transaction knows their ids: a
contiguous span ``[lo, hi]`` (:func:`written_span`; nobody else can write between them).  Given
that span, :func:`advance` needs no dedupe keys: the scope's unpublished rows above the mark are
all sent when none of them lies outside the span, which the pending index answers alone, without
reading a row (ADR-0033).
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
from junction.store.pg_batch import mark_published

_MARK_CHUNK = 1000  # dedupe keys in one statement
Span = tuple[int, int]  # the ids [lo, hi] one transaction's relay rows took


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
    if conn.dialect.name == "postgresql":  # one statement, the values one array parameter
        mark_published(conn, t.stage_relay, column.name, values, now)
        return
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
# the rows of one scope above its mark outside a span of ids, and the largest id there: the
# pending index ``(scope, published_at, id)`` answers it without reading a row
_id = t.stage_relay.c.id
_OUTSIDE_SPAN = select(
    func.count(case((~_id.between(bindparam("lo"), bindparam("hi")), 1))), func.max(_id)
).where(t.stage_relay.c.scope == bindparam("scope"), unpublished())


class _Compiled:
    """A query compiled once for SQLite's own cursor (watermarks are SQLite's): a batch asks it
    once a scope, and SQLAlchemy's statement cache and result rows cost more than the query."""

    def __init__(self, stmt: Any) -> None:
        compiled = stmt.compile(dialect=sqlite_dialect())
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup or ())
        self.defaults = dict(compiled.params)

    def fetchall(self, conn: Connection, **values: Any) -> list[Any]:
        params = {**self.defaults, **values}
        with raw_cursor(conn) as cur:
            cur.execute(self.sql, [params[name] for name in self.order])
            return cast("list[Any]", cur.fetchall())


_ABOVE_SQLITE = _Compiled(_ABOVE_MARK)
_OUTSIDE_SQLITE = _Compiled(_OUTSIDE_SPAN)


def _above_mark(conn: Connection, scope: str) -> list[tuple[int, str]]:
    """``(id, dedupe)`` of the unpublished rows of ``scope`` above its watermark."""
    if conn.dialect.name != "sqlite":
        return [(row[0], row[1]) for row in conn.execute(_ABOVE_MARK, {"scope": scope})]
    return cast("list[tuple[int, str]]", _ABOVE_SQLITE.fetchall(conn, scope=scope))


def _outside_span(conn: Connection, scope: str, span: Span) -> tuple[int, int | None]:
    """How many unpublished rows of ``scope`` above its watermark lie outside ``span``, and
    the largest id of them all (None: there are none)."""
    values = {"scope": scope, "lo": span[0], "hi": span[1]}
    if conn.dialect.name != "sqlite":
        outside, top = conn.execute(_OUTSIDE_SPAN, values).one()
    else:
        ((outside, top),) = _OUTSIDE_SQLITE.fetchall(conn, **values)
    return int(outside), top


def advance(conn: Connection, scope: str, sent: set[str], span: Span | None = None) -> bool:
    """Mark published the rows of ``scope`` whose dedupe keys are ``sent``.

    Moves the scope's watermark over them when they are all its unpublished rows above it;
    otherwise marks them one by one.  ``span``, when given, is the ids ``[lo, hi]`` of every row
    sent and only of them (one transaction's rows, all new: :func:`written_span`); the check
    then reads no row.  Returns whether the watermark moved.
    """
    if span is not None:
        outside, top = _outside_span(conn, scope, span)
        moves = not outside
    else:
        above = _above_mark(conn, scope)
        top = max(i for i, _ in above) if above else None
        moves = sent.issuperset(d for _, d in above)
    if top is None:
        return False
    if not moves:
        mark_rows(conn, t.stage_relay.c.dedupe, list(sent))
        return False
    conn.execute(
        _set_mark(conn.dialect.name),
        {"scope": scope, "published_through": top, "marked_at": time.time()},
    )
    return True


def written_span(conn: Connection, n: int) -> Span | None:
    """The ids ``[lo, hi]`` of the ``n`` relay rows the caller's SQLite transaction has just
    inserted, every one of them new, as its last inserts (None elsewhere, or when ``n`` is 0).

    A SQLite write transaction holds the database's lock, and ``AUTOINCREMENT`` gives each new
    row the next id: the ``n`` rows hold the ``n`` ids up to the last one inserted.
    """
    if n <= 0 or conn.dialect.name != "sqlite":
        return None
    with raw_cursor(conn) as cur:
        cur.execute("SELECT last_insert_rowid()")
        ((hi,),) = cur.fetchall()
    return (hi - n + 1, hi)


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


def advance_all(
    conn: Connection, sent: Iterable[tuple[str, str]], span: Span | None = None
) -> None:
    """:func:`advance` for each scope of ``sent`` (``(scope, dedupe)`` pairs), all of whose
    rows fill ``span`` when it is given."""
    by_scope: dict[str, set[str]] = {}
    for scope, dedupe in sent:
        by_scope.setdefault(scope, set()).add(dedupe)
    for scope, dedupes in by_scope.items():
        advance(conn, scope, dedupes, span)
