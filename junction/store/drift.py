"""Drift reports (``drift_reports``): one row per drift check of a model version.

The row's columns carry what is filtered and sorted on (pipeline, model, version, time, status,
the largest PSI); ``report`` holds the whole :class:`~scoring.drift.DriftReport` as JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from junction.store import tables as t
from junction.store.repo import Store
from scoring.drift import DriftReport


def save_report(conn: Connection, report: DriftReport) -> int:
    """Insert ``report`` in the caller's transaction; return its id (also set on ``report``).

    The model, version, window and time must be set (the drift job sets them).
    """
    if report.model is None or report.computed_at is None:
        raise ValueError("a drift report needs its model and time before it is saved")
    res = conn.execute(
        t.drift_reports.insert().values(
            pipeline=report.pipeline or "",
            model=report.model,
            model_version=report.model_version or "",
            computed_at=report.computed_at,
            window_start=report.window_start
            if report.window_start is not None
            else report.computed_at,
            window_end=report.window_end if report.window_end is not None else report.computed_at,
            n=report.n,
            status=report.status,
            max_psi=report.max_psi,
            report=orjson.dumps(report.to_dict()).decode(),
        )
    )
    pk = res.inserted_primary_key
    assert pk is not None
    report.id = int(pk[0])
    return report.id


def _report(row: Any) -> DriftReport:
    report = DriftReport.from_dict(orjson.loads(row.report))
    report.id = int(row.id)
    return report


def list_reports(
    store: Store,
    *,
    pipeline: str | None = None,
    model: str | None = None,
    version: str | None = None,
    since: float | None = None,
    limit: int = 20,
) -> list[DriftReport]:
    """Reports newest first, optionally of one pipeline, model, version, or since a time."""
    c = t.drift_reports.c
    q = select(c.id, c.report)
    if model is not None:
        q = q.where(c.model == model)
    if version is not None:
        q = q.where(c.model_version == version)
    if since is not None:
        q = q.where(c.computed_at >= since)
    if pipeline is not None:
        q = q.where(c.pipeline == pipeline)
    q = q.order_by(c.computed_at.desc(), c.id.desc()).limit(limit)
    with store.begin() as conn:
        rows = conn.execute(q).all()
    return [_report(r) for r in rows]


def latest_reports(store: Store, pipelines: list[str]) -> dict[str, DriftReport]:
    """The newest report of each of ``pipelines`` that has one."""
    out: dict[str, DriftReport] = {}
    for name in pipelines:
        found = list_reports(store, pipeline=name, limit=1)
        if found:
            out[name] = found[0]
    return out


__all__ = ["latest_reports", "list_reports", "save_report"]
