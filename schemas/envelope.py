"""Envelope: one canonical record with its identity and provenance."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.account import Account
from schemas.contact import Contact
from schemas.invoice import Invoice
from schemas.lead import Lead
from schemas.order import Order
from schemas.product import Product

Entity = Literal["lead", "contact", "account", "order", "product", "invoice"]

ENTITY_MODELS: dict[str, type[Lead | Contact | Account | Order | Product | Invoice]] = {
    "lead": Lead,
    "contact": Contact,
    "account": Account,
    "order": Order,
    "product": Product,
    "invoice": Invoice,
}


class Provenance(BaseModel):
    """Where a record came from, precisely enough to find the original bytes again."""

    model_config = ConfigDict(frozen=True)

    connector: str = Field(..., description="Connector id, e.g. csv_file.")
    stream: str = Field(..., description="Stream or file name.")
    location: str | None = Field(None, description="File path, URL or topic/partition.")
    content_sha256: str | None = Field(None, description="SHA-256 of the source file.")
    position: int | None = Field(None, description="Row number (1-based, data rows) or offset.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Connector-specific detail.")


class Envelope(BaseModel):
    """A canonical record as it travels through the hub."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal["envelope.v1"] = "envelope.v1"
    record_id: str = Field(..., description="Stable id: the same source record gives the same id.")
    entity: Entity = Field(..., description="Canonical entity type.")
    source_system: str = Field(..., description="Source system id, e.g. csv_file or salesforce.")
    source_key: str = Field(..., description="The record's key in its source.")
    provenance: Provenance
    received_at: datetime = Field(..., description="When Junction received the record (UTC).")
    payload: dict[str, Any] = Field(..., description="The canonical entity, as JSON.")
