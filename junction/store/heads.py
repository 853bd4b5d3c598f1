"""Latest wins: the newest version of each source record decides what is routed.

Sources that version their records (a CRM's ``SystemModstamp`` or ``updatedAt``) can deliver them
out of order: an Outbound Message retried for hours, a webhook event that overtakes an older one, a
poll overlapping a push.  Every version is stored (records are history, and their ids
``<pipeline>:<id>@<version>`` make re-reads idempotent), but only the newest version per source
key is *current*: ``record_heads`` remembers it, and the deliveries of a version that is older
than the head are dropped in the same transaction, so an old score never overwrites a newer one in
a CRM, and an old event never alerts after a newer one.

The upsert is a single ``INSERT … ON CONFLICT DO UPDATE … WHERE excluded.version > version``, so
concurrent writers (several workers on PostgreSQL) cannot move a head backwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t

Head = tuple[str, str, str, str]  # (pipeline, source_key, version, record_id)
_CHUNK = 400  # keys per look-up statement (well under SQLite's variable limit)


def advance_heads(conn: Connection, dialect: str, heads: Sequence[Head]) -> set[str]:
    """Move each head forward to its newest version; return the record ids that are current.

    A record id is current when, after this batch, it is the head of its source key: a version
    older than what is stored (or than another version in the same batch) is not.
    """
    if not heads:
        return set()
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = time.time()
    stmt = insert(t.record_heads)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.record_heads.c.pipeline, t.record_heads.c.source_key],
        set_={
            "version": stmt.excluded.version,
            "record_id": stmt.excluded.record_id,
            "updated_at": stmt.excluded.updated_at,
        },
        where=stmt.excluded.version > t.record_heads.c.version,
    )
    # ascending versions: within the batch the newest is written last and wins
    ordered = sorted(heads, key=lambda h: h[2])
    params: list[dict[str, Any]] = [
        {"pipeline": p, "source_key": k, "version": v, "record_id": r, "updated_at": now}
        for p, k, v, r in ordered
    ]
    conn.execute(stmt, params)
    keys = sorted({(h[0], h[1]) for h in heads})
    current: set[str] = set()
    for at in range(0, len(keys), _CHUNK):
        chunk = keys[at : at + _CHUNK]
        rows = conn.execute(
            select(t.record_heads.c.record_id).where(
                tuple_(t.record_heads.c.pipeline, t.record_heads.c.source_key).in_(chunk)
            )
        )
        current.update(r[0] for r in rows)
    return current


def current_only(
    conn: Connection, dialect: str, heads: Sequence[Head], deliveries: Sequence[Any]
) -> tuple[list[Any], int]:
    """Advance ``heads`` and keep the deliveries of current records; also count the stale ones.

    ``deliveries`` are outbox rows whose second column is the record id.  Records without a
    version (no head) are always current.
    """
    if not heads:
        return list(deliveries), 0
    current = advance_heads(conn, dialect, heads)
    versioned = {h[3] for h in heads}
    stale = versioned - current
    if not stale:
        return list(deliveries), 0
    return [d for d in deliveries if d[1] not in stale], len(stale)
