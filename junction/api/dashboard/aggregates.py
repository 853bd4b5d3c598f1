"""Store aggregates the dashboard draws: flow per time bucket, outbox lag, quarantine groups.

The JSON API has no aggregate routes, so these are the only queries the dashboard adds; lists,
details and every action go through the API's own route functions.  Each query is one
``GROUP BY`` over a time range (or over open entries), parameterized, on both store backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from junction.store import tables as t
from junction.store.repo import Store

SERIES = ("received", "scored", "quarantined", "delivered", "dead")


@dataclass
class Timeline:
    """Counts per bucket of ``bucket_s`` seconds from ``start`` (one list per series)."""

    start: float
    bucket_s: int
    buckets: int
    series: dict[str, list[int]] = field(default_factory=dict)

    def label(self, i: int) -> float:
        """The start time of bucket ``i``."""
        return self.start + i * self.bucket_s


def _bucket(store: Store, col: Any, start: float, bucket_s: int) -> ColumnElement[Any]:
    offset = (col - start) / bucket_s
    if store.engine.dialect.name == "postgresql":
        return cast(func.floor(offset), Integer)
    return cast(offset, Integer)  # SQLite truncates, which is floor for offsets >= 0


def _counts(
    store: Store,
    col: Any,
    start: float,
    bucket_s: int,
    *where: ColumnElement[bool],
    pipeline_col: Any = None,
    pipeline: str | None = None,
) -> dict[int, int]:
    b = _bucket(store, col, start, bucket_s).label("b")
    conds = [col >= start, *where]
    if pipeline is not None and pipeline_col is not None:
        conds.append(pipeline_col == pipeline)
    q = select(b, func.count()).where(and_(*conds)).group_by(b)
    with store.begin() as conn:
        return {int(r[0]): int(r[1]) for r in conn.execute(q).all()}


def timeline(
    store: Store,
    *,
    hours: int = 24,
    buckets: int = 24,
    pipeline: str | None = None,
    now: float | None = None,
) -> Timeline:
    """Records received, scored, quarantined, delivered and dead per bucket, oldest first."""
    end = time.time() if now is None else now
    bucket_s = max(60, hours * 3600 // buckets)
    start = end - bucket_s * buckets
    r, s, q, d = t.records.c, t.scores.c, t.quarantine.c, t.deliveries.c
    raw = {
        "received": _counts(
            store, r.received_at, start, bucket_s, pipeline_col=r.pipeline, pipeline=pipeline
        ),
        # scores carry no pipeline column; with a pipeline filter they are left out
        "scored": {} if pipeline else _counts(store, s.scored_at, start, bucket_s),
        "quarantined": _counts(
            store, q.created_at, start, bucket_s, pipeline_col=q.pipeline, pipeline=pipeline
        ),
        "delivered": _counts(
            store,
            d.delivered_at,
            start,
            bucket_s,
            d.status == "delivered",
            pipeline_col=d.pipeline,
            pipeline=pipeline,
        ),
        "dead": _counts(
            store,
            d.created_at,
            start,
            bucket_s,
            d.status == "dead",
            pipeline_col=d.pipeline,
            pipeline=pipeline,
        ),
    }
    out = Timeline(start, bucket_s, buckets)
    for name in SERIES:
        out.series[name] = [raw[name].get(i, 0) for i in range(buckets)]
    return out


def outbox_lag(store: Store, *, now: float | None = None) -> dict[str, Any]:
    """Pending deliveries: how many, how many are due, and the age of the oldest."""
    at = time.time() if now is None else now
    d = t.deliveries.c
    with store.begin() as conn:
        n, oldest = conn.execute(
            select(func.count(), func.min(d.created_at)).where(d.status == "pending")
        ).one()
        due = conn.execute(
            select(func.count()).where(d.status == "pending", d.next_attempt_at <= at)
        ).scalar_one()
    return {
        "pending": int(n),
        "due": int(due),
        "oldest_age_s": None if oldest is None else max(0.0, at - float(oldest)),
    }


def delivery_totals(store: Store) -> dict[str, int]:
    """Deliveries by status, every channel together."""
    d = t.deliveries.c
    with store.begin() as conn:
        rows = conn.execute(select(d.status, func.count()).group_by(d.status)).all()
    return {str(s): int(n) for s, n in rows}


def quarantine_groups(store: Store, *, status: str = "open") -> list[dict[str, Any]]:
    """Quarantine entries grouped by pipeline, stage and error code, largest group first."""
    q = t.quarantine.c
    query = (
        select(
            q.pipeline,
            q.stage,
            q.error_code,
            q.error_type,
            func.count().label("n"),
            func.max(q.created_at).label("newest"),
            func.max(q.id).label("newest_id"),
        )
        .where(q.status == status)
        .group_by(q.pipeline, q.stage, q.error_code, q.error_type)
        .order_by(func.count().desc(), q.pipeline, q.stage, q.error_code)
        .limit(200)
    )
    with store.begin() as conn:
        groups = [dict(r) for r in conn.execute(query).mappings().all()]
        for g in groups:
            # the newest entry's message stands for the group (messages name the field)
            g["message"] = conn.execute(
                select(q.message).where(q.id == g["newest_id"])
            ).scalar_one()
    return groups


def find_records(
    store: Store,
    source_key: str | None = None,
    *,
    subjects: list[str] | None = None,
    pipeline: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Records by source key (every version) or by subject pseudonym, newest first.

    ``subjects`` are keyed pseudonyms (``StorePrivacy.subject_of``): a person is found by their
    email without the email being compared, or even readable, in the store.
    """
    r = t.records.c
    q = select(r.id, r.pipeline, r.entity, r.source_system, r.source_key, r.received_at)
    if source_key is not None:
        q = q.where(r.source_key == source_key)
    if subjects is not None:
        q = q.where(r.subject.in_(subjects))
    if pipeline is not None:
        q = q.where(r.pipeline == pipeline)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(r.received_at.desc()).limit(limit)).mappings().all()
    return [dict(row) for row in rows]


def quarantine_history(store: Store, record_key: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Quarantine entries of one record key (a replayed record's earlier failures), oldest first.

    A replayed entry's key gets a ``#<n>`` suffix (so a new failure can take the key again).
    """
    q = t.quarantine.c
    same = or_(
        q.record_key == record_key, q.record_key.startswith(record_key + "#", autoescape=True)
    )
    cols = (q.id, q.stage, q.error_code, q.message, q.status, q.created_at, q.resolved_at)
    with store.begin() as conn:
        rows = conn.execute(select(*cols).where(same).order_by(q.id).limit(limit)).mappings()
        return [dict(r) for r in rows]


def model_versions(store: Store, model: str) -> list[str]:
    """The versions ``model`` has scores of: one index probe per version (a loose index scan)."""
    s = t.scores.c
    first = select(func.min(s.model_version).label("v")).where(s.model == model)
    found = first.cte("found", recursive=True)
    step = (
        select(func.min(s.model_version))
        .where(s.model == model, s.model_version > found.c.v)
        .scalar_subquery()
    )
    found = found.union_all(select(step).where(found.c.v.is_not(None)))
    with store.begin() as conn:
        rows = conn.execute(select(found.c.v).where(found.c.v.is_not(None))).all()
    return [str(r[0]) for r in rows]


def _latest_scores(store: Store, model: str, latest: int | None) -> Any:
    """The scores of ``model``: all of them, or the ``latest`` of each version (index-bounded)."""
    s = t.scores.c
    cols = (s.value, s.grade, s.variant, s.model_version)
    if latest is None:
        return select(*cols).where(s.model == model).subquery()
    parts = [
        select(*cols)
        .where(s.model == model, s.model_version == version)
        .order_by(s.scored_at.desc())
        .limit(latest)
        .subquery()
        for version in model_versions(store, model)
    ]
    if not parts:
        return select(*cols).where(s.model == model).subquery()
    return union_all(*(select(*p.c) for p in parts)).subquery()


def score_histogram(
    store: Store, model: str, *, bins: int = 10, latest: int | None = None
) -> list[int]:
    """How many scores of ``model`` fall in each of ``bins`` equal slices of [0, 1].

    ``latest`` bounds the work: only the newest ``latest`` scores of each model version count.
    """
    s = _latest_scores(store, model, latest).c
    b = cast(s.value * bins, Integer).label("b")  # values are in [0, 1]: truncation is floor
    if store.engine.dialect.name == "postgresql":
        b = cast(func.floor(s.value * bins), Integer).label("b")
    with store.begin() as conn:
        rows = conn.execute(select(b, func.count()).group_by(b)).all()
    out = [0] * bins
    for bucket, n in rows:
        out[min(max(int(bucket), 0), bins - 1)] += int(n)
    return out


def variants(store: Store, model: str, *, latest: int | None = None) -> list[dict[str, Any]]:
    """Per A/B variant and model version: how many scores, their mean and the share graded A.

    ``latest`` bounds the work as in ``score_histogram``.
    """
    s = _latest_scores(store, model, latest).c
    graded_a = func.sum(case((s.grade == "A", 1), else_=0))
    q = (
        select(
            s.variant,
            s.model_version,
            func.count().label("n"),
            func.avg(s.value).label("mean"),
            graded_a.label("a"),
        )
        .group_by(s.variant, s.model_version)
        .order_by(s.variant, s.model_version)
    )
    with store.begin() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def pending_by_channel(store: Store) -> dict[str, int]:
    """Pending deliveries per channel (the due index bounds it to the backlog)."""
    d = t.deliveries.c
    q = select(d.channel, func.count()).where(d.status == "pending").group_by(d.channel)
    with store.begin() as conn:
        return {str(c): int(n) for c, n in conn.execute(q).all()}
