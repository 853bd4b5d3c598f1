"""Operator actions on the store: pause and resume, discard dead letters, reset cursors.

Cursor resets for a backfill keep the live state: the first reset of a stream copies its live
cursor to ``<pipeline>@saved`` in the same transaction that moves the live cursor, and later
resets leave that copy alone, so it always holds the position from before the backfill began.
``restore_cursor`` puts it back.  Re-reading records that are already stored is harmless (ids
are stable and inserts ignore duplicates), so neither a reset nor a restore can lose or double
a record; the copy only spares the re-reading (ADR-0010).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, delete, select, update

from junction.store import tables as t
from junction.store.queries import SAVED_SUFFIX
from junction.store.repo import Store

# called inside the action's transaction, so the action and its audit entry commit together
InTxn = Callable[[Connection], object] | None


def set_paused(store: Store, pipeline: str, paused: bool, *, audit: InTxn = None) -> bool:
    """Pause or resume ``pipeline``; return whether the state changed."""
    now = time.time()
    with store.begin() as conn:
        was = conn.execute(
            select(t.pipeline_state.c.paused).where(t.pipeline_state.c.pipeline == pipeline)
        ).first()
        if was is None:
            conn.execute(
                t.pipeline_state.insert().values(pipeline=pipeline, paused=paused, updated_at=now)
            )
        else:
            conn.execute(
                update(t.pipeline_state)
                .where(t.pipeline_state.c.pipeline == pipeline)
                .values(paused=paused, updated_at=now)
            )
        if audit is not None:
            audit(conn)
    return (bool(was[0]) if was is not None else False) != paused


def discard_quarantine(
    store: Store, qid: int, *, reason: str, actor: str, audit: InTxn = None
) -> bool:
    """Close an open quarantine entry as discarded, keeping its bytes and the reason.

    Returns False when the entry is not open (already replayed or discarded).
    """
    with store.begin() as conn:
        row = conn.execute(
            select(t.quarantine.c.status, t.quarantine.c.context).where(t.quarantine.c.id == qid)
        ).first()
        if row is None or row[0] != "open":
            return False
        context = orjson.loads(row[1] or "{}")
        context["resolution"] = {"action": "discard", "reason": reason, "by": actor}
        conn.execute(
            update(t.quarantine)
            .where(t.quarantine.c.id == qid, t.quarantine.c.status == "open")
            .values(context=orjson.dumps(context).decode())
        )
        store.resolve_quarantine(conn, qid, "discarded")
        if audit is not None:
            audit(conn)
    return True


def _get(conn: Connection, pipeline: str, stream: str) -> dict[str, Any] | None:
    v = conn.execute(
        select(t.cursors.c.value).where(
            t.cursors.c.pipeline == pipeline, t.cursors.c.stream == stream
        )
    ).scalar()
    return None if v is None else dict(orjson.loads(v))


def _put(conn: Connection, pipeline: str, stream: str, value: dict[str, Any] | None) -> None:
    conn.execute(
        delete(t.cursors).where(t.cursors.c.pipeline == pipeline, t.cursors.c.stream == stream)
    )
    if value is not None:
        conn.execute(
            t.cursors.insert().values(
                pipeline=pipeline,
                stream=stream,
                value=orjson.dumps(value).decode(),
                updated_at=time.time(),
            )
        )


def reset_cursor(
    store: Store,
    pipeline: str,
    stream: str,
    value: dict[str, Any] | None,
    *,
    audit: InTxn = None,
) -> dict[str, Any]:
    """Move a stream's live cursor to ``value`` (None: from the beginning), saving the live one.

    Returns ``{"previous": live value before, "saved": the saved copy now kept}``.
    """
    saved_ns = pipeline + SAVED_SUFFIX
    with store.begin() as conn:
        previous = _get(conn, pipeline, stream)
        has_copy = (
            conn.execute(
                select(t.cursors.c.stream).where(
                    t.cursors.c.pipeline == saved_ns, t.cursors.c.stream == stream
                )
            ).first()
            is not None
        )
        if not has_copy:
            # a stream that had no cursor is saved as {} so a restore knows to start over
            _put(conn, saved_ns, stream, previous if previous is not None else {})
        _put(conn, pipeline, stream, value)
        saved = _get(conn, saved_ns, stream)
        if audit is not None:
            audit(conn)
    return {"previous": previous, "saved": saved}


def restore_cursor(
    store: Store, pipeline: str, stream: str, *, audit: InTxn = None
) -> dict[str, Any] | None:
    """Put the saved live cursor back and drop the copy; None when there is no copy.

    Returns ``{"value": the restored cursor (None: the stream starts over)}``.
    """
    saved_ns = pipeline + SAVED_SUFFIX
    with store.begin() as conn:
        saved = _get(conn, saved_ns, stream)
        if saved is None:
            return None
        value = saved or None
        _put(conn, pipeline, stream, value)
        _put(conn, saved_ns, stream, None)
        if audit is not None:
            audit(conn)
    return {"value": value}
