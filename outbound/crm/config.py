"""Configuration of the CRM write-back channel (``channels: crm.<name>``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# what a write-back can take from a scored-record delivery (the outbox event)
SOURCES = (
    "score.value",
    "score.value_pct",  # the value as a whole percentage 0-100, as CRM score fields expect
    "score.grade",
    "score.top_factors",  # rendered as short text: "page_views +0.82; industry -0.10"
    "score.model_version",
    "score.scored_at",
)


class CrmWriteBackConfig(BaseModel):
    """Write each scored record's score, grade and top factors back to its CRM record."""

    # connection holds the CRM credentials: kept out of reprs and out of validation errors
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    system: Literal["salesforce", "hubspot"] = Field(..., description="The CRM to write to.")
    connection: dict[str, Any] = Field(
        ...,
        repr=False,
        description="How to reach the CRM: the same auth options as its source connector "
        "(secrets as ${env:...} or ${file:...}).",
    )
    object: str = Field(
        ...,
        min_length=1,
        description="The CRM object written: Lead, Contact, Account (Salesforce); contacts, "
        "companies, deals (HubSpot).",
        examples=["Lead", "contacts"],
    )
    match: str = Field(
        "id",
        description="How a record is found: 'id' (update by CRM id), "
        "'external_id:<Field__c>' (Salesforce upsert) or 'property:<name>' (HubSpot upsert).",
        examples=["id", "external_id:Junction_Key__c", "property:email"],
    )
    target: str = Field(
        "source_key",
        description="Which value of the delivery addresses the CRM record: 'source_key' (the "
        "record's id in its source) or 'record.<field>' of the canonical record.",
        examples=["source_key", "record.external_id", "record.email"],
    )
    fields: dict[str, str] = Field(
        ...,
        min_length=1,
        description=f"CRM field per value to write; values: {', '.join(SOURCES)}.",
        examples=[{"score.value_pct": "Junction_Score__c", "score.grade": "Junction_Grade__c"}],
    )
    factors_limit: int = Field(3, ge=1, le=10, description="Top factors written as text.")
    text_max: int = Field(255, ge=16, le=32768, description="Longest text written to a field.")
    batch_window_s: float = Field(
        0.05,
        ge=0,
        le=5,
        description="How long concurrent deliveries are collected into one CRM batch call.",
    )

    @field_validator("fields")
    @classmethod
    def _known_sources(cls, value: dict[str, str]) -> dict[str, str]:
        for src, dest in value.items():
            if src not in SOURCES and not src.startswith("record."):
                raise ValueError(f"unknown write-back value {src!r} (known: {', '.join(SOURCES)})")
            if not dest.strip():
                raise ValueError(f"no CRM field named for {src!r}")
        return value

    @field_validator("match")
    @classmethod
    def _known_match(cls, value: str) -> str:
        kind, _, arg = value.partition(":")
        if value == "id" or (kind in ("external_id", "property") and arg.strip()):
            return value
        raise ValueError("match is 'id', 'external_id:<Field>' or 'property:<name>'")
