"""The hub's own events (endpoint disabled, retries exhausted, ...) and the alerts they raise.

``emit`` writes one row to the ``events`` table inside the caller's transaction, so an event is
committed exactly when the state change it describes is.  When an ``AlertPolicy`` names alert
channels and the kind alerts, the same transaction also puts one alert delivery per channel in
the outbox (id ``alert:<event id>:<channel>``, the channel's dots as underscores, as in every
webhook-id), which the delivery worker sends like any other delivery.

Alerts never loop: an event caused by an alert delivery (``from_alert``) raises no alert, and an
alert about a channel is never sent to that same channel.  So a failing alert channel produces
at most its own ``endpoint.disabled`` alert to the *other* alert channels, once per disable.

Alerts never flood either: an event with an ``alert_key`` (retries exhausted: the failing
channel) alerts only when no event of its kind with that key alerted in the last
``AlertPolicy.quiet_s`` seconds; the events themselves are all written.  The key of an event
that alerted is kept in its detail (``alert_key``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select

from junction.store import tables as t

if TYPE_CHECKING:
    from junction.store.repo import Store

ALERT_EVENT_TYPE = "junction.alert"
ALERT_PIPELINE = "_hub"  # the pipeline column of alert deliveries (no pipeline made them)
# kinds that alert by default (HubConfig.alerts.kinds narrows or widens the set)
ALERTING_KINDS = frozenset(
    {
        "endpoint.disabled",
        "message.attempt.exhausted",
        "model.drift",
        "model.retrain_requested",
    }
)


@dataclass(frozen=True)
class AlertPolicy:
    """Where alerts go (``to``: channel names) and which event kinds raise one."""

    to: tuple[str, ...] = ()
    kinds: frozenset[str] = field(default=ALERTING_KINDS)
    quiet_s: float = 300.0  # one alert per kind and key (e.g. failing channel) in this window

    @classmethod
    def of(
        cls, to: Iterable[str], kinds: Iterable[str] | None, *, quiet_s: float = 300.0
    ) -> AlertPolicy:
        """Build from ``HubConfig.alerts`` (``kinds`` None: the default alerting kinds)."""
        kinds_ = ALERTING_KINDS if kinds is None else frozenset(kinds)
        return cls(tuple(to), kinds_, quiet_s)

    def alerts(self, kind: str) -> bool:
        """Whether an event of ``kind`` raises an alert."""
        return bool(self.to) and kind in self.kinds


def alert_id(event_id: int, channel: str) -> str:
    """The delivery id (webhook-id) of one event's alert to ``channel``."""
    return f"alert:{event_id}:{channel}".replace(".", "_")


def is_alert(delivery_id: str) -> bool:
    """Whether a delivery id is an alert's."""
    return delivery_id.startswith("alert:")


def emit(
    conn: Connection,
    kind: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    *,
    alerts: AlertPolicy | None = None,
    from_alert: bool = False,
    alert_key: str | None = None,
    now: float | None = None,
) -> int:
    """Write one event in the caller's transaction (and its alert deliveries); return its id.

    Args:
        conn: The open transaction the state change is written in.
        kind: E.g. ``endpoint.disabled``, ``message.attempt.exhausted``.
        subject: What it is about: a channel name or a delivery id.
        detail: JSON-safe facts; personal data only as keyed pseudonyms.
        alerts: Where alerts go; None raises none.
        from_alert: The event was caused by an alert delivery: it raises no alert.
        alert_key: Alert at most once per ``alerts.quiet_s`` for this kind and key.
        now: The event time (default: now).
    """
    at = time.time() if now is None else now
    body = dict(detail or {})
    alert = alerts is not None and not from_alert and alerts.alerts(kind)
    if alert and alert_key is not None:
        assert alerts is not None
        alert = not _alerted_lately(conn, kind, alert_key, at - alerts.quiet_s)
        if alert:
            body["alert_key"] = alert_key
    res = conn.execute(
        t.events.insert().values(
            at=at, kind=kind, subject=subject[:600], detail=orjson.dumps(body).decode()
        )
    )
    pk = res.inserted_primary_key
    assert pk is not None
    event_id = int(pk[0])
    if alert:
        assert alerts is not None
        payload = orjson.dumps(
            {"type": ALERT_EVENT_TYPE, "kind": kind, "subject": subject, "detail": body, "at": at}
        ).decode()
        rows = [
            {
                "id": alert_id(event_id, ch),
                "record_id": f"event:{event_id}",
                "pipeline": ALERT_PIPELINE,
                "channel": ch,
                "event_type": ALERT_EVENT_TYPE,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
            }
            for ch in alerts.to
            if ch != subject  # never alert a channel about itself
        ]
        if rows:
            conn.execute(t.deliveries.insert(), rows)
    return event_id


def _alerted_lately(conn: Connection, kind: str, key: str, since: float) -> bool:
    c = t.events.c
    literal = orjson.dumps({"alert_key": key}).decode()[1:-1]  # "alert_key":"<key>"
    pattern = "%" + literal.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    hit = conn.execute(
        select(c.id)
        .where(c.kind == kind, c.at >= since, c.detail.like(pattern, escape="\\"))
        .limit(1)
    ).first()
    return hit is not None


def list_events(
    store: Store,
    since: float | None = None,
    kinds: Collection[str] | None = None,
    *,
    subject: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Events at or after ``since`` (oldest first), optionally of some ``kinds`` or one subject."""
    c = t.events.c
    q = select(t.events)
    if since is not None:
        q = q.where(c.at >= since)
    if kinds is not None:
        q = q.where(c.kind.in_(list(kinds)))
    if subject is not None:
        q = q.where(c.subject == subject)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(c.id).limit(limit)).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        row["detail"] = orjson.loads(row["detail"])
        out.append(row)
    return out


__all__ = [
    "ALERTING_KINDS",
    "ALERT_EVENT_TYPE",
    "ALERT_PIPELINE",
    "AlertPolicy",
    "alert_id",
    "emit",
    "is_alert",
    "list_events",
]
