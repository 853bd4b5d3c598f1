"""SendGrid event webhook payloads, read into the provider events the store applies.

SendGrid posts a JSON array of events.  Each has ``event`` (processed, deferred, delivered, open,
click, bounce, dropped, spamreport, unsubscribe, group_unsubscribe, group_resubscribe),
``email``, ``sg_event_id`` (unique per event: the dedupe key) and ``sg_message_id``, whose part
before the first '.' is the X-Message-Id the Mail Send answer gave (``deliveries.remote_id``).  The
message's custom args come back at the top level, so ``delivery_id`` names our delivery.

A delivery's ``remote_status`` only moves forward (processed < deferred < delivered < open <
click < unsubscribes < spamreport < bounce/dropped): events arrive out of order, and a late
``processed`` must not hide a bounce.  Bounces of type ``blocked`` (a temporary refusal by the
receiving server) update the status but do not suppress the address.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from junction.core.errors import ParseError
from junction.store.provider_events import ProviderEvent
from outbound.email_sendgrid.config import normalize_email

SUPPRESSING = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
RANK = {
    "processed": 0,
    "deferred": 1,
    "delivered": 2,
    "open": 3,
    "click": 4,
    "group_resubscribe": 4,
    "unsubscribe": 5,
    "group_unsubscribe": 5,
    "spamreport": 6,
    "bounce": 7,
    "dropped": 7,
}
MAX_EVENTS = 10_000
_ID_CHARS = 256  # inbound_events.event_id
_REMOTE_ID_CHARS = 128  # deliveries.remote_id


def replaceable(status: str) -> tuple[str, ...]:
    """The remote statuses ``status`` may overwrite (those ranked below it)."""
    rank = RANK[status]
    return tuple(s for s, r in RANK.items() if r < rank)


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a verified body.

    Raises:
        ParseError: Not a JSON array of objects, or more than ``MAX_EVENTS`` of them.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ParseError("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise ParseError("the body must be a JSON array of events", code="unexpected_shape")
    if len(data) > MAX_EVENTS:
        raise ParseError(f"at most {MAX_EVENTS} events per request", code="too_many_events")
    return data


def _text(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    return value if isinstance(value, str) and value else None


def provider_event(event: dict[str, Any]) -> ProviderEvent:
    """What the hub does with one SendGrid event."""
    event_id = _text(event, "sg_event_id")
    if event_id is None or len(event_id) > _ID_CHARS:
        # no usable id: the event's own bytes identify it (a redelivery is byte-identical)
        canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        event_id = f"sha256:{hashlib.sha256(canonical).hexdigest()}"
    kind = _text(event, "event")
    status = kind if kind in RANK else None
    message_id = _text(event, "sg_message_id")
    remote_id = message_id.split(".", 1)[0][:_REMOTE_ID_CHARS] if message_id else None
    address: str | None = None
    if kind in SUPPRESSING and not (kind == "bounce" and event.get("type") == "blocked"):
        email = _text(event, "email")
        if email is not None:
            try:
                address = normalize_email(email)
            except ValueError:
                address = None
    return ProviderEvent(
        event_id=event_id,
        status=status,
        replaces=replaceable(status) if status is not None else None,
        delivery_id=_text(event, "delivery_id"),
        remote_id=remote_id,
        suppress_kind="email" if address else None,
        address=address,
        reason=kind if address else None,
    )
