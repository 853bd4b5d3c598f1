"""Delivery events a provider posts back (SendGrid's event webhook, ...), applied in one txn.

For each event, in the order received: its id goes into ``inbound_events`` (a redelivered event is
counted as a duplicate and changes nothing); the delivery it names gets the provider's status in
``deliveries.remote_status`` (found by our delivery id, else by the provider's message id); and a
bounce, complaint or opt-out puts the address on the suppression list, with a
``suppression.added`` row in ``events`` whose detail holds the address only as its pseudonym.
Everything a request carries commits together or not at all, so a failure answered 5xx leaves
nothing marked seen and the provider's retry applies it whole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t
from junction.store.events import emit
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList

SUPPRESSION_ADDED = "suppression.added"
_STATUS_CHARS = 32  # deliveries.remote_status


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event, reduced to what the hub acts on."""

    event_id: str  # the provider's unique id for this event (the dedupe key)
    status: str | None = None  # the delivery's new remote_status
    # the statuses it may overwrite besides NULL (None: any), so that a status only moves forward
    # although events arrive out of order
    replaces: tuple[str, ...] | None = None
    delivery_id: str | None = None  # our id, when the provider echoes it
    remote_id: str | None = None  # the provider's message id (deliveries.remote_id)
    suppress_kind: str | None = None  # email | phone | ...: suppress ``address``
    address: str | None = None
    reason: str | None = None  # why: bounce, spamreport, unsubscribe, ...


@dataclass(frozen=True)
class Applied:
    """What one batch of events did."""

    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0  # addresses newly put on the suppression list
    matched: int = 0  # deliveries whose remote_status was set


def apply_provider_events(
    store: Store,
    suppressions: SuppressionList,
    *,
    source: str,
    subject: str,
    events: Sequence[ProviderEvent],
    now: float | None = None,
) -> Applied:
    """Apply ``events`` from ``source`` (e.g. ``sendgrid:email_sendgrid.sales``) in one transaction.

    Args:
        store: The hub's store.
        suppressions: The suppression list (it gives the pseudonymous address keys).
        source: The ``inbound_events`` source and the suppressions' ``source``.
        subject: The ``events`` row subject (the channel name).
        events: The events, in the order received.
        now: The time written (defaults to now).

    Raises:
        UnavailableError: The store failed; nothing was written.
    """
    at = time.time() if now is None else now
    accepted = duplicates = suppressed = matched = 0
    with store.begin() as conn:
        for ev in events:
            if not _first_time(conn, store.dialect, source, ev.event_id, at):
                duplicates += 1
                continue
            accepted += 1
            if ev.status is not None:
                matched += _set_status(conn, ev)
            if ev.suppress_kind and ev.address:
                suppressed += _suppress(conn, store, suppressions, ev, source, subject, at)
    return Applied(accepted, duplicates, suppressed, matched)


def _first_time(conn: Connection, dialect: str, source: str, event_id: str, at: float) -> bool:
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert_(t.inbound_events)
        .values(source=source, event_id=event_id, received_at=at, records=0)
        .on_conflict_do_nothing()
        .returning(t.inbound_events.c.event_id)  # rowcount is unreliable on some drivers
    )
    return conn.execute(stmt).first() is not None


def _set_status(conn: Connection, ev: ProviderEvent) -> int:
    c = t.deliveries.c
    status = (ev.status or "")[:_STATUS_CHARS]
    forward = (
        true()
        if ev.replaces is None
        else or_(c.remote_status.is_(None), c.remote_status.in_(ev.replaces))
    )
    if ev.delivery_id:
        found = conn.execute(select(c.id).where(c.id == ev.delivery_id)).first()
        if found is not None:
            where = c.id == ev.delivery_id
            conn.execute(update(t.deliveries).where(where, forward).values(remote_status=status))
            return 1
    if ev.remote_id:
        found = conn.execute(select(c.id).where(c.remote_id == ev.remote_id)).first()
        if found is not None:
            conn.execute(
                update(t.deliveries)
                .where(c.remote_id == ev.remote_id, forward)
                .values(remote_status=status)
            )
            return 1
    return 0


def _suppress(
    conn: Connection,
    store: Store,
    suppressions: SuppressionList,
    ev: ProviderEvent,
    source: str,
    subject: str,
    at: float,
) -> int:
    assert ev.suppress_kind is not None
    assert ev.address is not None
    key = suppressions.key(ev.suppress_kind, ev.address)
    reason = (ev.reason or "provider")[:64]
    row = {
        "kind": ev.suppress_kind,
        "address_key": key,
        "reason": reason,
        "source": source[:128],
        "created_at": at,
    }
    # the same insert SuppressionList.add makes, inside this request's transaction
    sql = store._insert_ignore(t.suppressions, tuple(row))
    if not conn.exec_driver_sql(sql, tuple(row.values())).rowcount:
        return 0  # already suppressed: the first reason stays, no second event
    detail = {
        "kind": ev.suppress_kind,
        "address": key,
        "reason": reason,
        "source": source,
        "event_id": ev.event_id,
    }
    emit(conn, SUPPRESSION_ADDED, subject, detail, now=at)
    return 1
