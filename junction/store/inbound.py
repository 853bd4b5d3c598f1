"""Pushed records (inbound webhooks, the ingest API), stored with their dedupe key in one txn.

The sender's delivery id is recorded in ``inbound_events`` in the same transaction as the records it
carried, so a crash between the two cannot happen: either both are durable (and a retry of the
same delivery is answered as a duplicate) or neither is (and the retry stores it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t
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
    event_id: str,
    records: Sequence[Row],
    scores: Sequence[Row],
    deliveries: Sequence[Row],
    quarantined: Sequence[Row],
) -> bool:
    """Store one pushed event's effects; False (and nothing written) if the event was seen."""
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(t.inbound_events)
        .values(
            source=source,
            event_id=event_id,
            received_at=time.time(),
            records=len(records) + len(quarantined),
        )
        .on_conflict_do_nothing()
        .returning(t.inbound_events.c.event_id)  # rowcount is not reliable on every driver
    )
    with store.begin() as conn:
        if conn.execute(stmt).first() is None:
            return False
        store.insert_many(conn, t.records, RECORD_COLS, records)
        store.insert_many(conn, t.scores, SCORE_COLS, scores)
        store.insert_many(conn, t.deliveries, DELIVERY_COLS, deliveries)
        store.insert_many(conn, t.quarantine, QUARANTINE_COLS, quarantined)
    return True


def seen(store: Store, source: str, event_id: str) -> bool:
    """Whether ``source`` already delivered ``event_id``."""
    with store.begin() as conn:
        row = conn.execute(
            t.inbound_events.select().where(
                t.inbound_events.c.source == source, t.inbound_events.c.event_id == event_id
            )
        ).first()
    return row is not None
