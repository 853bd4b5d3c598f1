"""The masking policy of messages to people: personal fields masked unless the route reveals them.

SMS and Slack messages, and email subjects, are read on lock screens, in shared channels and in
mail previews, so their templates render from a masked copy of the event by default: the record's
personal fields (``x-pii`` in its schema, or a personal field name such as ``email`` or
``*_phone``) masked by class (``junction.core.masking``), and email addresses and E.164 phone
numbers masked wherever else they appear (a digest's items, an alert's detail, a source key).  A
route with ``reveal_pii: true`` (``Delivery.reveal_pii``) renders the event as it is.  Recipients
are always read from the event in clear: masking changes what a message says, never who gets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from junction.core.masking import mask_record, mask_text
from outbound.base import Delivery
from schemas.pii import pii_classes


def mask_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a delivery's event with its personal values masked (digests item by item)."""
    out: dict[str, Any] = {}
    entity = event.get("entity")
    declared = pii_classes(entity) if isinstance(entity, str) else {}
    for key, value in event.items():
        if key == "record" and isinstance(value, Mapping):
            out[key] = mask_record(value, declared)
        elif key == "items" and isinstance(value, list):
            out[key] = [mask_event(v) if isinstance(v, Mapping) else mask_text(v) for v in value]
        else:
            out[key] = mask_text(value)
    return out


def template_context(delivery: Delivery, event: Mapping[str, Any]) -> dict[str, Any]:
    """The context a template of ``delivery`` renders from: ``event`` masked, or as it is."""
    return dict(event) if delivery.reveal_pii else mask_event(event)
