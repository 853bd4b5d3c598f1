"""Opt-ins: a person asks to be messaged again (an SMS ``START``), lifting their suppression.

The lift, the sender's event id (``inbound_events``, so a redelivered or late ``START`` is applied
once) and a ``suppression.lifted`` row in ``events`` (the address only as its pseudonym) commit in
one transaction.
"""

from __future__ import annotations

import time

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t
from junction.store.events import emit
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList

SUPPRESSION_LIFTED = "suppression.lifted"


def lift_once(
    store: Store,
    suppressions: SuppressionList,
    *,
    source: str,
    subject: str,
    event_id: str,
    kind: str,
    address: str,
    now: float | None = None,
) -> bool | None:
    """Lift the suppression of ``address`` unless ``source`` already sent ``event_id``.

    Args:
        store: The hub's store.
        suppressions: The suppression list (it gives the pseudonymous address key).
        source: The ``inbound_events`` source, e.g. ``twilio:sms_twilio.oncall``.
        subject: The ``events`` row subject (the channel name).
        event_id: The sender's id of the opt-in message.
        kind: The address kind (``phone``).
        address: The address, normalized as the suppression list holds it.
        now: The time written (defaults to now).

    Returns:
        None for a duplicate event; else whether a suppression was lifted.

    Raises:
        UnavailableError: The store failed; nothing was written.
    """
    at = time.time() if now is None else now
    key = suppressions.key(kind, address)
    insert_ = pg_insert if store.dialect == "postgresql" else sqlite_insert
    c = t.suppressions.c
    with store.begin() as conn:
        first = conn.execute(
            insert_(t.inbound_events)
            .values(source=source, event_id=event_id, received_at=at, records=0)
            .on_conflict_do_nothing()
            .returning(t.inbound_events.c.event_id)
        ).first()
        if first is None:
            return None
        lifted = bool(
            conn.execute(
                delete(t.suppressions).where(c.kind == kind, c.address_key == key)
            ).rowcount
        )
        if lifted:
            detail = {"kind": kind, "address": key, "source": source, "event_id": event_id}
            emit(conn, SUPPRESSION_LIFTED, subject, detail, now=at)
    return lifted
