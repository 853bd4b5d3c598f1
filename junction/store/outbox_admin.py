"""Operator actions on the outbox: replay dead, suppressed or skipped deliveries, one or in bulk.

A replay puts deliveries back in the queue as if new (status ``pending``, no attempts, due now,
no lease) and closes their open dead-letter entries (quarantine stage ``deliver``, keyed by the
delivery id) as replayed, all in ONE transaction together with the caller's audit entry.  The
delivery keeps its id, so a receiver that already has it (a 2xx whose recording was lost) sees
the same ``webhook-id`` again and dedupes it.

A replayed ``suppressed`` delivery passes the suppression gate again: it is sent only if the
suppression was lifted meanwhile.  ``held`` and ``digested`` deliveries belong to a digest and
are never replayed on their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, select, update

from junction.core.errors import ConfigError
from junction.store import tables as t
from junction.store.repo import Store

# statuses a delivery can be replayed from
REPLAYABLE = ("dead", "suppressed", "skipped")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
_CHUNK = 500  # ids per statement (SQLite binds at most 32,766 parameters)
# called inside the replay's transaction with the ids it re-queued (the audit entry goes there)
ReplayAudit = Callable[[Connection, list[str]], object] | None


def replay_deliveries(
    store: Store,
    *,
    ids: Sequence[str] | None = None,
    channel: str | None = None,
    status: str | None = "dead",
    since: float | None = None,
    until: float | None = None,
    limit: int = DEFAULT_LIMIT,
    audit: ReplayAudit = None,
) -> int:
    """Re-queue the matching deliveries; return how many were re-queued.

    Args:
        store: The hub's store.
        ids: Only these delivery ids (a manual replay); None: every match of the filters.
        channel: Only deliveries to this channel (configured name, e.g. ``webhook.sales``).
        status: Replay deliveries in this status (``dead``, ``suppressed`` or ``skipped``);
            None: in any of them.
        since: Only deliveries created at or after this Unix time.
        until: Only deliveries created before this Unix time.
        limit: At most this many deliveries (oldest first); call again for the rest.
        audit: Called in the same transaction with the re-queued ids (skipped when none).

    Returns:
        The number of deliveries put back in the queue.

    Raises:
        ConfigError: ``status`` is not replayable, or ``limit`` is out of range.
        UnavailableError: The store is unavailable.
    """
    if status is not None and status not in REPLAYABLE:
        raise ConfigError(
            f"deliveries in status {status!r} cannot be replayed (only {', '.join(REPLAYABLE)})"
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"the replay limit must be between 1 and {MAX_LIMIT}")
    d = t.deliveries.c
    statuses = list(REPLAYABLE) if status is None else [status]
    query = select(d.id).where(d.status.in_(statuses))
    if ids is not None:
        if not ids:
            return 0
        query = query.where(d.id.in_(list(dict.fromkeys(ids))))
    if channel is not None:
        query = query.where(d.channel == channel)
    if since is not None:
        query = query.where(d.created_at >= since)
    if until is not None:
        query = query.where(d.created_at < until)
    query = query.order_by(d.created_at, d.id).limit(limit)
    if store.dialect == "postgresql":
        # a concurrent replay (or the worker) waits for this one instead of racing it
        query = query.with_for_update(of=t.deliveries)
    with store.begin() as conn:
        chosen = list(conn.execute(query).scalars())
        if not chosen:
            return 0
        now = time.time()
        requeued: list[str] = []
        for at in range(0, len(chosen), _CHUNK):
            requeued += conn.execute(
                update(t.deliveries)
                .where(d.id.in_(chosen[at : at + _CHUNK]), d.status.in_(statuses))
                # a replay sends again: a provider status of an earlier send must not count as
                # a report of this one (the worker takes a reported send as delivered)
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    remote_status=None,
                )
                .returning(d.id)
            ).scalars()
        _close_dead_letters(store, conn, requeued)
        if requeued and audit is not None:
            audit(conn, requeued)
    return len(requeued)


def _close_dead_letters(store: Store, conn: Connection, delivery_ids: list[str]) -> None:
    """Mark the open ``deliver`` quarantine entries of ``delivery_ids`` replayed."""
    q = t.quarantine.c
    for at in range(0, len(delivery_ids), _CHUNK):
        chunk = delivery_ids[at : at + _CHUNK]
        open_entries = conn.execute(
            select(q.id).where(q.stage == "deliver", q.status == "open", q.record_key.in_(chunk))
        ).scalars()
        for qid in list(open_entries):
            store.resolve_quarantine(conn, qid, "replayed")


def delivery_status(store: Store, delivery_id: str) -> str | None:
    """The status of one delivery (None when there is no such delivery)."""
    with store.begin() as conn:
        status = conn.execute(
            select(t.deliveries.c.status).where(t.deliveries.c.id == delivery_id)
        ).scalar()
    return None if status is None else str(status)
