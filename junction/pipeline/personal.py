"""Taking a canonical record's personal members out of it, for encryption at rest.

A store that seals personal data (ADR-0021) keeps a record's other members readable and seals
its personal ones together.  The preparer that builds the record's JSON knows the model, so it
writes the readable members and hands the personal ones over as they are; the store then
seals them without parsing the JSON back (``BatchPreparer.prepare(split_personal=True)``).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import SchemaSerializer

from schemas.base import CanonicalModel

_TEXT = (str, str | None)


class PersonalSplit:
    """Which members of ``model`` are personal (``x-pii``), and how to read them."""

    __slots__ = ("_clear", "_fields", "_plain", "_to_json", "members")

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
        self._clear = _clear_serializer(model, self.members)

    def __repr__(self) -> str:
        return f"PersonalSplit({', '.join(self._fields)})"

    def clear_json(self, record: CanonicalModel) -> bytes:
        """``record``'s JSON without its personal members (and without unset ones): what
        ``to_json(record, exclude=members, exclude_none=True)`` writes."""
        if self._clear is not None:
            return self._clear.to_json(record.__dict__, exclude_none=True)
        return self._to_json(record, exclude=self.members, exclude_none=True)

    def of(self, record: CanonicalModel) -> dict[str, Any]:
        """The personal members of ``record`` that are set, in the model's field order."""
        if self._plain:
            values = record.__dict__
            return {k: v for k in self._fields if (v := values[k]) is not None}
        out: dict[str, Any] = orjson.loads(
            self._to_json(record, include=self.members, exclude_none=True)
        )
        return out


def _clear_serializer(model: type[CanonicalModel], members: set[str]) -> SchemaSerializer | None:
    """A serializer of a ``model`` instance's ``__dict__`` that leaves ``members`` out, or None
    when the model is not one it can stand in for.

    pydantic checks every field against an ``exclude`` set on every call (~1,000 instructions
    a record for the canonical lead); a typed-dict schema of the model's own field schemas with
    the personal ones marked ``serialization_exclude`` writes the same JSON without the checks.
    Only plain models qualify: no serializers or computed fields of their own, no extra members
    (those live outside ``__dict__``).
    """
    schema: Any = model.__pydantic_core_schema__
    decorators = model.__pydantic_decorators__
    config = schema.get("config") or {}
    if (
        schema.get("type") != "model"
        or schema["schema"].get("type") != "model-fields"
        or schema["schema"].get("computed_fields")
        or "serialization" in schema
        or decorators.model_serializers
        or decorators.field_serializers
        or config.get("extra_fields_behavior") == "allow"
    ):
        return None
    fields = {}
    for name, field in schema["schema"]["fields"].items():
        spec = {k: v for k, v in field.items() if k not in ("type", "frozen")}
        spec.update(type="typed-dict-field", required=True)
        if name in members:
            spec["serialization_exclude"] = True
        fields[name] = spec
    try:
        return SchemaSerializer({"type": "typed-dict", "fields": fields}, config)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a schema this does not understand: pydantic's own path
        return None
