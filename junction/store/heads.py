"""Latest wins, and only changes route: the newest version of each source record decides.

Sources that version their records (a CRM's ``SystemModstamp`` or ``updatedAt``) can deliver them
out of order: an Outbound Message retried for hours, a webhook event that overtakes an older one, a
poll overlapping a push.  Every version is stored (records are history, and their ids
``<pipeline>:<id>@<version>`` make re-reads idempotent), but only the newest version per source
key is *current*: ``record_heads`` remembers it, and the deliveries of a version older than the
head are dropped in the same transaction, so an old score never overwrites a newer one in a CRM,
and an old event never alerts after a newer one.

A newer version whose *content* did not change (the same canonical fields apart from the change
time, and the same score) is stored and becomes the head, but is not routed either.  Such a
version is what a CRM reports after our own write-back bumped its modification stamp; routing it
would write the same score back again, forever, once per poll.

The head moves by a single ``INSERT … ON CONFLICT DO UPDATE … WHERE excluded.version > version``,
so concurrent writers (several workers on PostgreSQL) cannot move it backwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t

# (pipeline, source_key, version, record_id, content_hash)
Head = tuple[str, str, str, str, str]
_CHUNK = 400  # keys per look-up statement (well under SQLite's variable limit)


def _heads_of(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    # one pipeline per look-up: `pipeline = ? AND source_key IN (...)` walks the primary key,
    # where a row-value IN over both columns makes SQLite scan the whole table (measured: the
    # 100k-record sync slowed down with every batch)
    c = t.record_heads.c
    by_pipeline: dict[str, list[str]] = {}
    for pipeline, key in keys:
        by_pipeline.setdefault(pipeline, []).append(key)
    found: dict[tuple[str, str], Any] = {}
    for pipeline, names in by_pipeline.items():
        for at in range(0, len(names), _CHUNK):
            rows = conn.execute(
                select(c.source_key, c.record_id, c.content_hash).where(
                    c.pipeline == pipeline, c.source_key.in_(names[at : at + _CHUNK])
                )
            )
            for r in rows:
                found[(pipeline, r.source_key)] = r
    return found


def advance_heads(conn: Connection, dialect: str, heads: Sequence[Head]) -> set[str]:
    """Move each head forward to its newest version; return the record ids to route.

    A record is routed when, after this batch, it is the head of its source key and its content
    hash differs from the head's before the batch (or there was none).
    """
    if not heads:
        return set()
    keys = sorted({(h[0], h[1]) for h in heads})
    before = _heads_of(conn, keys)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = time.time()
    stmt = insert(t.record_heads)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.record_heads.c.pipeline, t.record_heads.c.source_key],
        set_={
            "version": stmt.excluded.version,
            "record_id": stmt.excluded.record_id,
            "content_hash": stmt.excluded.content_hash,
            "updated_at": stmt.excluded.updated_at,
        },
        where=stmt.excluded.version > t.record_heads.c.version,
    )
    # ascending versions: within the batch the newest is written last and wins
    params: list[dict[str, Any]] = [
        {
            "pipeline": p,
            "source_key": k,
            "version": v,
            "record_id": r,
            "content_hash": h,
            "updated_at": now,
        }
        for p, k, v, r, h in sorted(heads, key=lambda h: h[2])
    ]
    conn.execute(stmt, params)
    after = _heads_of(conn, keys)
    routed: set[str] = set()
    for key, head in after.items():
        prev = before.get(key)
        if prev is None or prev.content_hash != head.content_hash:
            routed.add(head.record_id)
    return routed


def routed_only(
    conn: Connection, dialect: str, heads: Sequence[Head], deliveries: Sequence[Any]
) -> tuple[list[Any], int]:
    """Advance ``heads``; keep the deliveries of records to route; count the versions held back.

    ``deliveries`` are outbox rows whose second column is the record id.  Records without a
    version (no head) are always routed.
    """
    if not heads:
        return list(deliveries), 0
    routed = advance_heads(conn, dialect, heads)
    held = {h[3] for h in heads} - routed
    if not held:
        return list(deliveries), 0
    return [d for d in deliveries if d[1] not in held], len(held)
