"""Taking a canonical record's personal members out of it, for encryption at rest.

A store that seals personal data (ADR-0021) keeps a record's other members readable and seals
its personal ones together.  The preparer that builds the record's JSON knows the model, so it
writes the readable members and hands the personal ones over as they are; the store then
seals them without parsing the JSON back (``BatchPreparer.prepare(split_personal=True)``).
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.base import CanonicalModel

_TEXT = (str, str | None)


class PersonalSplit:
    """Which members of ``model`` are personal (``x-pii``), and how to read them."""

    __slots__ = ("_fields", "_plain", "_to_json", "members")

    def __init__(self, model: type[CanonicalModel]) -> None:
        """Compile the split for ``model``."""
        self._fields = tuple(model.pii_fields())
        self.members: set[str] = set(self._fields)  # pydantic's ``exclude`` of the rest
        decorators = model.__pydantic_decorators__
        # text fields without a serializer of their own are written by pydantic exactly as
        # orjson writes the instance's values: read them from the instance (~0.5 µs a
        # record) instead of serializing and parsing them (~2 µs more)
        self._plain = (
            not decorators.model_serializers
            and not decorators.field_serializers
            and all(model.model_fields[f].annotation in _TEXT for f in self._fields)
        )
        self._to_json = model.__pydantic_serializer__.to_json

    def __repr__(self) -> str:
        return f"PersonalSplit({', '.join(self._fields)})"

    def of(self, record: CanonicalModel) -> dict[str, Any]:
        """The personal members of ``record`` that are set, in the model's field order."""
        if self._plain:
            values = record.__dict__
            return {k: v for k in self._fields if (v := values[k]) is not None}
        out: dict[str, Any] = orjson.loads(
            self._to_json(record, include=self.members, exclude_none=True)
        )
        return out
