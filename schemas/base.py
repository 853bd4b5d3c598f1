"""Shared base for canonical models, and how personal data is marked."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PII(StrEnum):
    """How a field identifies a person (drives encryption, masking and log pseudonyms)."""

    DIRECT = "direct_identifier"  # a name, a personal id number
    CONTACT = "contact"  # an email address, a phone number, a postal address
    SENSITIVE = "sensitive"  # special-category data


def pii_field(kind: PII, *, description: str, default: Any = None, **kw: Any) -> Any:
    """Declare a field that holds personal data; the marking lands in the JSON Schema."""
    return Field(default, description=description, json_schema_extra={"x-pii": kind.value}, **kw)


class CanonicalModel(BaseModel):
    """Base of every canonical entity: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @classmethod
    def pii_fields(cls) -> dict[str, str]:
        """Return ``{field name: PII kind}`` for the fields that hold personal data."""
        out: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "x-pii" in extra:
                out[name] = str(extra["x-pii"])
        return out
