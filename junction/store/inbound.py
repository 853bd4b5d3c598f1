"""Pushed records (inbound webhooks, the ingest API), stored with their dedupe key in one txn.

The sender's delivery id is recorded in ``inbound_events`` in the same transaction as the records it
carried, so a crash between the two cannot happen: either both are durable (and a retry of the
same delivery is answered as a duplicate) or neither is (and the retry stores it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t
from junction.store.heads import routed_only
from junction.store.outcomes import upsert_outcomes
from junction.store.repo import (
    DELIVERY_COLS,
    QUARANTINE_COLS,
    RECORD_COLS,
    SCORE_COLS,
    Row,
    Store,
)


def write_pushed(
    store: Store,
    *,
    source: str,
    event_id: str | Sequence[str],
    records: Sequence[Row],
    scores: Sequence[Row],
    deliveries: Sequence[Row],
    quarantined: Sequence[Row],
    heads: Sequence[Row] = (),
    outcomes: Sequence[Row] = (),
) -> int | None:
    """Store one pushed delivery's effects; return the deliveries written, None if it was seen.

    ``event_id`` is the delivery's id, or the ids of its items when the source sends several
    events in one body (HubSpot): the effects are written when at least one of them is new.
    Writing them again for a partly seen body is harmless, as every insert is idempotent.
    """
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    ids = [event_id] if isinstance(event_id, str) else list(dict.fromkeys(event_id))
    now = time.time()
    count = len(records) + len(quarantined)
    with store.begin() as conn:
        new = 0
        for eid in ids:
            stmt = (
                insert(t.inbound_events)
                .values(source=source, event_id=eid, received_at=now, records=count)
                .on_conflict_do_nothing()
                .returning(t.inbound_events.c.event_id)  # rowcount is unreliable on some drivers
            )
            new += conn.execute(stmt).first() is not None
        if not new:
            return None
        deliveries, _ = routed_only(conn, store.dialect, heads, deliveries)
        store.insert_many(conn, t.records, RECORD_COLS, records)
        store.insert_many(conn, t.scores, SCORE_COLS, scores)
        upsert_outcomes(conn, store.dialect, outcomes)
        store.insert_many(conn, t.deliveries, DELIVERY_COLS, deliveries)
        store.insert_many(conn, t.quarantine, QUARANTINE_COLS, quarantined)
    return len(deliveries)


def seen(store: Store, source: str, event_id: str) -> bool:
    """Whether ``source`` already delivered ``event_id``."""
    return bool(seen_ids(store, source, [event_id]))


def seen_ids(store: Store, source: str, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` ``source`` already delivered."""
    found: set[str] = set()
    ids = list(dict.fromkeys(event_ids))
    with store.begin() as conn:
        for at in range(0, len(ids), 400):
            rows = conn.execute(
                select(t.inbound_events.c.event_id).where(
                    t.inbound_events.c.source == source,
                    t.inbound_events.c.event_id.in_(ids[at : at + 400]),
                )
            )
            found.update(r[0] for r in rows)
    return found
