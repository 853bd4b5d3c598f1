"""The personal-data classification of the canonical schemas, as data.

Each personal field carries ``x-pii`` in its JSON Schema (``schemas.base.pii_field``): one of
``direct_identifier`` (a name), ``contact`` (an email, a phone, a postal address) or ``sensitive``
(special-category data; none of the canonical entities holds any today).  Masking, log pseudonyms
and ``junction schemas pii`` read it from here.  Nested models (order lines) are walked, and their
fields are named ``lines[].field``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel

from schemas.base import PII, CanonicalModel
from schemas.envelope import ENTITY_MODELS

CLASSES = tuple(c.value for c in PII)


@dataclass(frozen=True, slots=True)
class PiiField:
    """One personal field of a canonical entity."""

    entity: str
    field: str  # dotted for nested models: lines[].name
    pii_class: str  # direct_identifier, contact or sensitive
    description: str


def _nested_model(annotation: Any) -> type[CanonicalModel] | None:
    """The canonical model inside ``list[Model]``, ``Model | None``..., or None."""
    if isinstance(annotation, type) and issubclass(annotation, CanonicalModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _fields(entity: str, model: type[BaseModel], prefix: str) -> list[PiiField]:
    out: list[PiiField] = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and "x-pii" in extra:
            out.append(
                PiiField(entity, f"{prefix}{name}", str(extra["x-pii"]), info.description or "")
            )
        nested = _nested_model(info.annotation)
        if nested is not None:
            out.extend(_fields(entity, nested, f"{prefix}{name}[]."))
    return out


def pii_catalog(entity: str | None = None) -> list[PiiField]:
    """Every personal field of every canonical entity (or of ``entity``), in schema order.

    Raises:
        KeyError: ``entity`` is not a canonical entity.
    """
    names = sorted(ENTITY_MODELS) if entity is None else [entity]
    return [f for name in names for f in _fields(name, ENTITY_MODELS[name], "")]


def pii_classes(entity: str) -> dict[str, str]:
    """``{field: class}`` of an entity's top-level personal fields ({} for an unknown entity)."""
    model = ENTITY_MODELS.get(entity)
    return {} if model is None else model.pii_fields()
