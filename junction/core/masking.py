"""Masking personal values by class, for people who need a hint of a value but not the value.

Exports (``junction export --masked``) and messages to people (SMS, Slack, email subjects) show
personal fields masked unless the route allows them in clear.  The mask depends on the field's
class (``x-pii`` in the canonical schemas) and on what the value is:

- contact: an email keeps its first character and its domain (``a***@example.com``), a phone its
  country prefix and last three digits (``+44*******123``), a postal address nothing (``***``);
- direct identifier: a name keeps its initials (``A. S.``), other identifiers nothing;
- sensitive: nothing (``***``).

Masking is one way and unkeyed: it is for reading, not for joining (use the keyed pseudonyms of
``junction.core.pseudonym`` to join).  Free text (alert details, error messages) can carry email
addresses and E.164 phone numbers anywhere: :func:`mask_text` masks those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from junction.core.pii_text import EMAIL_IN_TEXT, PHONE_IN_TEXT
from junction.core.pseudonym import pii_kind

MASK = "***"
DIRECT = "direct_identifier"
CONTACT = "contact"
SENSITIVE = "sensitive"
CLASSES = (DIRECT, CONTACT, SENSITIVE)

# the class of the personal data a field holds, by the kind its name says (pseudonym.PII_KEYS)
KIND_CLASS: dict[str, str] = {
    "email": CONTACT,
    "phone": CONTACT,
    "address": CONTACT,
    "name": DIRECT,
    "ip": DIRECT,
    "national_id": DIRECT,
    "birthdate": DIRECT,
}

_PHONE_SHAPE = re.compile(r"^\+?[\d\s().\-/]{6,}$")
_NOT_DIGIT = re.compile(r"\D")
PHONE_KEEP_END = 3


def mask_email(value: str) -> str:
    """``ann.smith@example.com`` as ``a***@example.com`` (no ``@``: fully masked)."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or not domain:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_phone(value: str) -> str:
    """``+447700900123`` as ``+44*******123``: the country prefix and the last three digits.

    A number without ``+`` keeps its last three digits only; one of six digits or fewer keeps
    nothing.
    """
    text = value.strip()
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) <= 6:
        return "*" * max(len(digits), 3)
    if text.startswith("+"):
        head = digits[:2]
        return f"+{head}{'*' * (len(digits) - 2 - PHONE_KEEP_END)}{digits[-PHONE_KEEP_END:]}"
    return f"{'*' * (len(digits) - PHONE_KEEP_END)}{digits[-PHONE_KEEP_END:]}"


def mask_name(value: str) -> str:
    """``Ann Smith`` as ``A. S.``: the initial of each word."""
    words = value.split()
    if not words:
        return MASK
    return " ".join(f"{w[0]}." for w in words)


def mask_value(pii_class: str, value: Any, *, kind: str | None = None) -> Any:
    """``value`` of a personal field masked for its class (None and booleans stay as they are).

    Args:
        pii_class: ``direct_identifier``, ``contact`` or ``sensitive`` (anything else: sensitive).
        value: The value; lists and dicts are masked item by item.
        kind: What the value is (``email``, ``phone``, ``name``, ``address``...) when the field
            name tells it; otherwise a contact value is read by its shape.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return [mask_value(pii_class, v, kind=kind) for v in value]
    if isinstance(value, Mapping):
        return {str(k): mask_value(pii_class, v, kind=kind) for k, v in value.items()}
    if not isinstance(value, str):
        return MASK
    if pii_class == CONTACT:
        if kind == "email" or (kind is None and "@" in value):
            return mask_email(value)
        if kind == "phone" or (kind is None and _PHONE_SHAPE.match(value.strip())):
            return mask_phone(value)
        return MASK
    if pii_class == DIRECT and kind in (None, "name"):
        return mask_name(value)
    return MASK


def field_class(field: str, declared: Mapping[str, str]) -> str | None:
    """The class of ``field``: the schema's ``x-pii`` mark, else what its name says, else None."""
    found = declared.get(field)
    if found is not None:
        return found
    kind = pii_kind(field)
    return None if kind is None else KIND_CLASS.get(kind)


def mask_record(record: Mapping[str, Any], declared: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``record`` with its personal fields masked by class.

    Args:
        record: A canonical record as JSON (nested dicts and lists are walked).
        declared: ``{field: class}`` from the schema (``CanonicalModel.pii_fields()``); fields
            it leaves out are still masked when their name says they are personal (``email``,
            ``*_phone``, ``first_name``...), and emails and E.164 phones in any other text are
            masked too.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = str(key)
        cls = field_class(name, declared)
        if cls is not None:
            out[name] = mask_value(cls, value, kind=pii_kind(name))
        else:
            out[name] = mask_text(value)
    return out


def mask_text(data: Any) -> Any:
    """``data`` with every email address and E.164 phone number in its strings masked."""
    if isinstance(data, str):
        if "@" in data:
            data = EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), data)
        if "+" in data:
            data = PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), data)
        return data
    if isinstance(data, Mapping):
        return mask_record(data, {})
    if isinstance(data, list | tuple):
        return [mask_text(v) for v in data]
    return data
