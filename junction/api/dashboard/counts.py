"""Totals the dashboard shows, bounded in time however large the store grows.

An exact ``COUNT(*)`` reads every row it counts: at a million records the pipeline page's
totals (``Store.counts``) and the channels' deliveries by status took seconds.  Here a count
over a large PostgreSQL table is the planner's estimate (``EXPLAIN`` of the same parameterized
query, from the statistics autovacuum keeps), shown with "≈"; a count the estimate puts
under ``EXACT_MAX`` rows is then counted exactly, but only where an index bounds it (callers
say so).  Small tables (under ``SMALL_TABLE`` rows) and SQLite are always counted exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Table, and_, column, func, select
from sqlalchemy import table as table_clause
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from junction.store import tables as t
from junction.store.repo import Store

EXACT_MAX = 50_000
SMALL_TABLE = 200_000
DELIVERY_STATUSES = ("pending", "delivered", "dead", "suppressed", "skipped", "held", "digested")
_PG_CLASS = table_clause("pg_class", column("oid"), column("reltuples"))


class Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON)`` of a select, its bound parameters kept (PostgreSQL)."""

    inherit_cache = False

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.stmt, **kw)


@dataclass
class Totals:
    """Counts by name, and which of them are estimates."""

    values: dict[str, int] = field(default_factory=dict)
    approx: set[str] = field(default_factory=set)


class Counter:
    """Counts on one connection; estimates on large PostgreSQL tables (see the module)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self._sizes: dict[str, float] = {}

    def table_rows(self, table: Table) -> float:
        """The table's row estimate (``pg_class.reltuples``; -1 when never analyzed)."""
        if table.name not in self._sizes:
            q = select(_PG_CLASS.c.reltuples).where(_PG_CLASS.c.oid == func.to_regclass(table.name))
            found = self.conn.execute(q).scalar()
            self._sizes[table.name] = -1.0 if found is None else float(found)
        return self._sizes[table.name]

    def estimate(self, stmt: Any) -> int:
        """The planner's row estimate for ``stmt``."""
        plan = self.conn.execute(Explain(stmt)).scalar_one()
        doc = plan if isinstance(plan, list) else orjson.loads(plan)
        return int(doc[0]["Plan"]["Plan Rows"])

    def count(
        self, table: Table, *conds: ColumnElement[bool], indexed: bool = False
    ) -> tuple[int, bool]:
        """``(n, approximate)`` of the rows of ``table`` matching ``conds``."""
        exact = select(func.count()).select_from(table)
        rows = select(table.c[next(iter(table.c.keys()))]).select_from(table)
        if conds:
            exact = exact.where(and_(*conds))
            rows = rows.where(and_(*conds))
        if self.pg:
            size = self.table_rows(table)
            if size >= SMALL_TABLE:
                guess = self.estimate(rows)
                if not (indexed and guess < EXACT_MAX):
                    return (guess if conds else int(size)), True
        return int(self.conn.execute(exact).scalar() or 0), False


def pipeline_totals(store: Store, pipeline: str) -> Totals:
    """The pipeline page's totals (``Store.counts``' fields), estimated where they are large."""
    out = Totals()
    r, s, q, d = t.records.c, t.scores.c, t.quarantine.c, t.deliveries.c
    with store.begin() as conn:
        c = Counter(conn)

        def put(name: str, found: tuple[int, bool]) -> None:
            out.values[name] = found[0]
            if found[1]:
                out.approx.add(name)

        put("records", c.count(t.records, r.pipeline == pipeline))
        of_pipeline = select(r.id).where(r.pipeline == pipeline)
        put("scored", c.count(t.scores, s.record_id.in_(of_pipeline)))
        # the open entries and the deliveries still to go or given up are indexed by status
        put(
            "quarantined",
            c.count(t.quarantine, q.status == "open", q.pipeline == pipeline, indexed=True),
        )
        for status in ("pending", "delivered", "dead"):
            found = c.count(t.deliveries, d.status == status, d.pipeline == pipeline, indexed=True)
            put(f"deliveries_{status}", found)
        put("attempts", c.count(t.attempts))
    return out


def channel_counts(store: Store, channels: list[str]) -> dict[str, Totals]:
    """Deliveries by status of each channel (``ix_deliveries_channel_due`` bounds each count)."""
    d = t.deliveries.c
    out: dict[str, Totals] = {}
    with store.begin() as conn:
        c = Counter(conn)
        if not c.pg or c.table_rows(t.deliveries) < SMALL_TABLE:
            rows = conn.execute(
                select(d.channel, d.status, func.count()).group_by(d.channel, d.status)
            ).all()
            for channel, status, n in rows:
                out.setdefault(str(channel), Totals()).values[str(status)] = int(n)
            return out
        for name in channels:
            totals = out.setdefault(name, Totals())
            for status in DELIVERY_STATUSES:
                n, approx = c.count(
                    t.deliveries, d.channel == name, d.status == status, indexed=True
                )
                if n:
                    totals.values[status] = n
                    if approx:
                        totals.approx.add(status)
    return out


def delivery_totals(store: Store) -> Totals:
    """Deliveries by status, every channel together."""
    d = t.deliveries.c
    out = Totals()
    with store.begin() as conn:
        c = Counter(conn)
        if not c.pg or c.table_rows(t.deliveries) < SMALL_TABLE:
            rows = conn.execute(select(d.status, func.count()).group_by(d.status)).all()
            out.values = {str(s): int(n) for s, n in rows}
            return out
        for status in DELIVERY_STATUSES:
            n, approx = c.count(t.deliveries, d.status == status, indexed=True)
            if n:
                out.values[status] = n
                if approx:
                    out.approx.add(status)
    return out
