"""Read-side queries for the operations API: keyset paging over runs, records, quarantine, outbox.

Every list takes ``limit`` and an ``after`` key (the last key of the previous page) and returns
``(rows, next_after)``; ``next_after`` is None on the last page.  Keys are primary keys, so each
page is an index range scan however large the table: runs and quarantine entries newest first
(integer ids), records and deliveries in id order (string ids).  String keys are only ever
compared with the column's own ordering (``>`` and ``ORDER BY``), never with a computed upper
bound, so paging is right under any PostgreSQL collation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import func, select

from junction.store import tables as t
from junction.store.repo import Store

Row = dict[str, Any]
SAVED_SUFFIX = "@saved"  # cursors of pipeline "<name>@saved" are saved copies of live cursors


def _page(rows: Sequence[Any], limit: int, key: str) -> tuple[list[Row], Any]:
    out = [dict(r) for r in rows[:limit]]
    return out, (out[-1][key] if len(rows) > limit and out else None)


def _json(value: str | None, default: Any) -> Any:
    return default if value is None else orjson.loads(value)


# pipelines and runs


def pipeline_states(store: Store) -> dict[str, bool]:
    """``{pipeline: paused}`` for every pipeline with a state row."""
    with store.begin() as conn:
        rows = conn.execute(select(t.pipeline_state.c.pipeline, t.pipeline_state.c.paused)).all()
    return {str(r[0]): bool(r[1]) for r in rows}


def is_paused(store: Store, pipeline: str) -> bool:
    """Whether ``pipeline`` is paused."""
    with store.begin() as conn:
        v = conn.execute(
            select(t.pipeline_state.c.paused).where(t.pipeline_state.c.pipeline == pipeline)
        ).scalar()
    return bool(v)


def _run(row: Any) -> Row:
    out = dict(row)
    out["counts"] = _json(out.get("counts"), {})
    return out


def last_runs(store: Store, pipelines: Sequence[str]) -> dict[str, Row]:
    """The newest run of each pipeline that has one."""
    out: dict[str, Row] = {}
    with store.begin() as conn:
        for name in pipelines:
            row = (
                conn.execute(
                    select(t.runs)
                    .where(t.runs.c.pipeline == name)
                    .order_by(t.runs.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is not None:
                out[name] = _run(row)
    return out


def list_runs(
    store: Store,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> tuple[list[Row], int | None]:
    """Runs, newest first."""
    q = select(t.runs)
    if pipeline is not None:
        q = q.where(t.runs.c.pipeline == pipeline)
    if status is not None:
        q = q.where(t.runs.c.status == status)
    if after is not None:
        q = q.where(t.runs.c.id < after)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(t.runs.c.id.desc()).limit(limit + 1)).mappings().all()
    page, nxt = _page(rows, limit, "id")
    return [_run(r) for r in page], nxt


def get_run(store: Store, run_id: int) -> Row | None:
    """One run with its counts, or None."""
    with store.begin() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).mappings().first()
    return None if row is None else _run(row)


# records, scores, deliveries


def list_records(
    store: Store, pipeline: str, *, limit: int = 100, after: str | None = None
) -> tuple[list[Row], str | None]:
    """A pipeline's records in id order, without payloads."""
    cols = [c for c in t.records.c if c.name not in ("payload", "provenance")]
    q = select(*cols).where(t.records.c.pipeline == pipeline)
    if after is not None:
        q = q.where(t.records.c.id > after)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(t.records.c.id).limit(limit + 1)).mappings().all()
    return _page(rows, limit, "id")


def _score(row: Any) -> Row:
    out = dict(row)
    out["factors"] = [{"feature": f, "contribution": c} for f, c in _json(out.pop("factors"), [])]
    return out


def latest_scores(store: Store, record_ids: Sequence[str]) -> dict[str, Row]:
    """The newest score of each record that has one."""
    if not record_ids:
        return {}
    with store.begin() as conn:
        rows = (
            conn.execute(
                select(t.scores)
                .where(t.scores.c.record_id.in_(list(record_ids)))
                .order_by(t.scores.c.scored_at)
            )
            .mappings()
            .all()
        )
    return {r["record_id"]: _score(r) for r in rows}  # later rows win


def _delivery(row: Any) -> Row:
    return {k: v for k, v in dict(row).items() if k not in ("payload", "lease_until")}


def record_detail(store: Store, record_id: str) -> Row | None:
    """One record with its scores and deliveries (delivery payloads left out)."""
    with store.begin() as conn:
        row = conn.execute(select(t.records).where(t.records.c.id == record_id)).mappings().first()
        if row is None:
            return None
        scores = conn.execute(
            select(t.scores)
            .where(t.scores.c.record_id == record_id)
            .order_by(t.scores.c.scored_at.desc())
        ).mappings()
        deliveries = conn.execute(
            select(t.deliveries)
            .where(t.deliveries.c.record_id == record_id)
            .order_by(t.deliveries.c.id)
        ).mappings()
        out = store.open_record_rows(conn, [row])[0]  # personal fields opened (encryption)
        out.pop("subject", None)
        out["payload"] = _json(out["payload"], {})
        out["provenance"] = _json(out["provenance"], {})
        out["scores"] = [_score(s) for s in scores]
        out["deliveries"] = [_delivery(d) for d in deliveries]
    return out


def list_deliveries(
    store: Store,
    *,
    status: str | None = None,
    channel: str | None = None,
    pipeline: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[Row], str | None]:
    """Outbox rows in id order, without payloads."""
    cols = [c for c in t.deliveries.c if c.name not in ("payload", "lease_until")]
    q = select(*cols)
    if status is not None:
        q = q.where(t.deliveries.c.status == status)
    if channel is not None:
        q = q.where(t.deliveries.c.channel == channel)
    if pipeline is not None:
        q = q.where(t.deliveries.c.pipeline == pipeline)
    if after is not None:
        q = q.where(t.deliveries.c.id > after)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(t.deliveries.c.id).limit(limit + 1)).mappings().all()
    return _page(rows, limit, "id")


def delivery_detail(store: Store, delivery_id: str) -> Row | None:
    """One delivery with its payload (parsed) and its attempts, oldest first."""
    with store.begin() as conn:
        row = (
            conn.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id))
            .mappings()
            .first()
        )
        if row is None:
            return None
        opened = store.open_delivery_rows(conn, [row])[0]  # the payload opened (encryption)
        attempts = conn.execute(
            select(t.attempts)
            .where(t.attempts.c.delivery_id == delivery_id)
            .order_by(t.attempts.c.attempt_no, t.attempts.c.id)
        ).mappings()
        out = _delivery(opened)
        out.pop("subject", None)
        out["payload"] = _json(opened["payload"], None)
        out["history"] = [
            {k: v for k, v in dict(a).items() if k != "delivery_id"} for a in attempts
        ]
    return out


def channel_counts(store: Store) -> dict[str, dict[str, int]]:
    """``{channel: {status: deliveries}}``."""
    with store.begin() as conn:
        rows = conn.execute(
            select(t.deliveries.c.channel, t.deliveries.c.status, func.count()).group_by(
                t.deliveries.c.channel, t.deliveries.c.status
            )
        ).all()
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in rows:
        out.setdefault(str(channel), {})[str(status)] = int(n)
    return out


def endpoint_states(store: Store) -> dict[str, Row]:
    """``{channel: {disabled, reason, updated_at}}`` for channels with a state row."""
    with store.begin() as conn:
        rows = conn.execute(select(t.endpoints)).mappings().all()
    return {r["channel"]: {k: r[k] for k in ("disabled", "reason", "updated_at")} for r in rows}


# quarantine


def _quarantine(row: Any) -> Row:
    out = {k: v for k, v in dict(row).items() if k != "payload"}
    out["context"] = _json(out.get("context"), {})
    out["provenance"] = _json(out.get("provenance"), {})
    return out


def list_quarantine(
    store: Store,
    *,
    pipeline: str | None = None,
    status: str | None = "open",
    stage: str | None = None,
    code: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> tuple[list[Row], int | None]:
    """Quarantine entries, newest first, without payloads."""
    cols = [c for c in t.quarantine.c if c.name != "payload"]
    q = select(*cols)
    for col, value in (
        (t.quarantine.c.pipeline, pipeline),
        (t.quarantine.c.status, status),
        (t.quarantine.c.stage, stage),
        (t.quarantine.c.error_code, code),
    ):
        if value is not None:
            q = q.where(col == value)
    if after is not None:
        q = q.where(t.quarantine.c.id < after)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(t.quarantine.c.id.desc()).limit(limit + 1)).mappings().all()
    page, nxt = _page(rows, limit, "id")
    return [_quarantine(r) for r in page], nxt


def quarantine_detail(store: Store, qid: int) -> tuple[Row, bytes | None] | None:
    """One quarantine entry (parsed) and its original bytes, or None."""
    with store.begin() as conn:
        q = select(t.quarantine).where(t.quarantine.c.id == qid)
        found = conn.execute(q).mappings().first()
        if found is None:
            return None
        row = store.open_quarantine_rows(conn, [found])[0]  # original bytes opened (encryption)
    payload = row["payload"]
    return _quarantine(row), (None if payload is None else bytes(payload))


# cursors


def list_cursors(store: Store, pipeline: str) -> list[Row]:
    """A pipeline's live cursors, each with its saved copy (``saved``) if a reset made one."""
    with store.begin() as conn:
        rows = (
            conn.execute(
                select(t.cursors)
                .where(t.cursors.c.pipeline.in_([pipeline, pipeline + SAVED_SUFFIX]))
                .order_by(t.cursors.c.stream)
            )
            .mappings()
            .all()
        )
    live: dict[str, Row] = {}
    saved: dict[str, Row] = {}
    for r in rows:
        item = {"value": orjson.loads(r["value"]), "updated_at": r["updated_at"]}
        (saved if r["pipeline"] != pipeline else live)[r["stream"]] = item
    return [
        {
            "stream": stream,
            "value": (live.get(stream) or {}).get("value"),
            "updated_at": (live.get(stream) or {}).get("updated_at"),
            "saved": saved.get(stream),
        }
        for stream in sorted(live.keys() | saved.keys())
    ]


# pushed events


def event_outcome(store: Store, pipeline: str, source: str, event_id: str, n: int) -> Row:
    """What an already stored pushed event of ``n`` records produced: records, scores, errors.

    Record ids and quarantine keys of a pushed event are ``<pipeline>:<source>:<event>:<index>``
    (a resolved quarantine entry's key has ``#<entry id>`` appended).
    """
    prefix = f"{pipeline}:{source}:{event_id}:"
    with store.begin() as conn:
        rids = [
            str(r[0])
            for r in conn.execute(
                select(t.records.c.id)
                .where(t.records.c.id.in_([f"{prefix}{i}" for i in range(n)]))
                .order_by(t.records.c.id)
            ).all()
        ]
        qrows = (
            conn.execute(
                select(t.quarantine).where(
                    t.quarantine.c.pipeline == pipeline,
                    t.quarantine.c.record_key.startswith(prefix, autoescape=True),
                )
            )
            .mappings()
            .all()
        )
        routed = (
            int(
                conn.execute(
                    select(func.count())
                    .select_from(t.deliveries)
                    .where(t.deliveries.c.record_id.in_(rids))
                ).scalar()
                or 0
            )
            if rids
            else 0
        )
    scores = latest_scores(store, rids)

    def index(key: str) -> int | None:
        tail = key[len(prefix) :].split("#", 1)[0]  # resolved entries carry "#<id>"
        return int(tail) if tail.isdigit() else None

    records = []
    for rid in rids:
        item: Row = {"index": index(rid), "record_id": rid}
        s = scores.get(rid)
        if s is not None:
            item["score"] = {
                "value": s["value"],
                "grade": s["grade"],
                "model_version": s["model_version"],
            }
        records.append(item)
    errors = [
        {
            "index": index(str(q["record_key"])),
            "stage": q["stage"],
            "code": q["error_code"],
            "message": q["message"],
            "context": _json(q["context"], {}),
        }
        for q in qrows
    ]
    records.sort(key=lambda d: (d["index"] is None, d["index"] or 0))
    errors.sort(key=lambda d: (d["index"] is None, d["index"] or 0))
    return {"records": records, "errors": errors, "routed": routed}
