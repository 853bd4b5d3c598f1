"""Masking personal values in API responses.

Canonical records are classified (``x-pii`` in the schemas), so only their personal fields are
masked.  Raw payloads (quarantined source bytes) are not classified, so every value in them is
masked and only their shape shows: keys, types and lengths, which is usually enough to see why a
record failed.  An admin sees the values by asking ``?reveal=true``; the route audits it.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from junction.api.policy import Principal
from junction.api.problems import ApiProblem
from schemas.envelope import ENTITY_MODELS

REVEAL_MAX_BYTES = 1_048_576


def masked(value: Any) -> Any:
    """A marker that keeps a value's type and length but not the value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return f"<masked str len={len(value)}>"
    if isinstance(value, int | float):
        return "<masked number>"
    return "<masked>"


def mask_all(data: Any) -> Any:
    """``data`` with every scalar masked (keys kept)."""
    if isinstance(data, dict):
        return {k: mask_all(v) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_all(v) for v in data]
    return masked(data)


def mask_entity(entity: str, record: Any) -> Any:
    """A canonical record with its personal fields masked (everything, for unknown entities)."""
    model = ENTITY_MODELS.get(entity)
    if model is None or not isinstance(record, dict):
        return mask_all(record)
    pii = model.pii_fields()
    return {k: (mask_all(v) if k in pii else v) for k, v in record.items()}


def mask_event(payload: Any) -> Any:
    """A delivery payload (an event carrying a canonical record) with personal values masked."""
    if not isinstance(payload, dict) or not isinstance(payload.get("record"), dict):
        return mask_all(payload)
    out = dict(payload)
    out["record"] = mask_entity(str(payload.get("entity", "")), payload["record"])
    return out


def raw_payload(data: bytes | None, *, reveal: bool) -> dict[str, Any] | None:
    """Original bytes for a response: JSON shown masked (or as is), other bytes by size."""
    if data is None:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        out: dict[str, Any] = {"format": "bytes", "size": len(data)}
        if reveal:
            chunk = data[:REVEAL_MAX_BYTES]
            out["truncated"] = len(data) > REVEAL_MAX_BYTES
            try:
                out["text"] = chunk.decode("utf-8")
            except UnicodeDecodeError:
                out["base64"] = base64.b64encode(chunk).decode("ascii")
        return out
    return {"format": "json", "size": len(data), "data": parsed if reveal else mask_all(parsed)}


def check_reveal(principal: Principal, reveal: bool) -> bool:
    """Whether to reveal personal values; only an admin may ask (403 otherwise)."""
    if reveal and "admin" not in principal.roles:
        raise ApiProblem(
            403, "Forbidden", "only an admin may reveal personal data", code="reveal_forbidden"
        )
    return reveal
