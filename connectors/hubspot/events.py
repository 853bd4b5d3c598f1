"""HubSpot webhook bodies: a JSON array of events, each naming one object (not its state).

An event looks like ``{"eventId": 3816279340, "subscriptionId": 25, "portalId": 33,
"occurredAt": 1462216307945, "subscriptionType": "contact.propertyChange", "objectId": 1246965,
"propertyName": "lifecyclestage", "propertyValue": "subscriber", "attemptNumber": 0}``.  Each
becomes a ``PushItem`` whose ``fetch_id`` is the object id: the hub reads the object's current
state through ``fetch`` (the event's ``propertyValue`` may be ``REDACTED``, and events arrive
out of order, so the payload is never the record).  ``eventId`` is the durable dedupe key
(HubSpot retries with the same id and a higher ``attemptNumber``).

Events of other objects (tickets, conversations, ...) are skipped: no stream reads them.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.base import PushItem
from junction.core.errors import ParseError

# subscription type prefix (``contact.creation``) and generic objectTypeId (``object.*``) → stream
STREAM_OF_PREFIX = {"contact": "contacts", "company": "companies", "deal": "deals"}
STREAM_OF_TYPE_ID = {"0-1": "contacts", "0-2": "companies", "0-3": "deals"}
MAX_EVENTS = 1000  # HubSpot sends at most 100 per request; a larger array is not HubSpot's


def _integer_id(event: dict[str, Any], name: str, index: int) -> str:
    value = event.get(name)
    # JSON numbers as HubSpot sends them; digit strings are tolerated (proxies re-encode)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParseError(f"event {index}: {name} is missing or not an id", field=name)
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ParseError(f"event {index}: {name} is not a numeric id", field=name)
    return str(int(text))


def _stream_of(event: dict[str, Any], index: int) -> str | None:
    kind = event.get("subscriptionType", event.get("eventType"))
    if not isinstance(kind, str) or "." not in kind:
        raise ParseError(f"event {index}: subscriptionType is missing", field="subscriptionType")
    prefix = kind.split(".", 1)[0]
    if prefix == "object":
        type_id = event.get("objectTypeId")
        return STREAM_OF_TYPE_ID.get(type_id) if isinstance(type_id, str) else None
    return STREAM_OF_PREFIX.get(prefix)


def parse_events(body: bytes) -> list[PushItem]:
    """The items of one webhook delivery, in HubSpot's order; ``ParseError`` when malformed."""
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ParseError("the HubSpot webhook body is not JSON") from None
    if not isinstance(events, list):
        raise ParseError("the HubSpot webhook body is not an array of events")
    if len(events) > MAX_EVENTS:
        raise ParseError(f"the HubSpot webhook body holds more than {MAX_EVENTS} events")
    items: list[PushItem] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ParseError(f"event {index} is not an object")
        event_id = _integer_id(event, "eventId", index)
        stream = _stream_of(event, index)
        if stream is None:
            continue
        # association changes name the two ends; the event is about the "from" object
        id_field = "objectId" if "objectId" in event else "fromObjectId"
        items.append(
            PushItem(
                event_id=event_id,
                stream=stream,
                fetch_id=_integer_id(event, id_field, index),
                version=None,
            )
        )
    return items
