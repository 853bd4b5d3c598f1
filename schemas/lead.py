"""Lead: a person who may buy, before qualification."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from schemas.base import PII, CanonicalModel, pii_field


class Lead(CanonicalModel):
    """A sales lead, as every source maps it."""

    schema_version: Literal["lead.v1"] = "lead.v1"
    external_id: str | None = Field(None, description="The lead's id in its source system.")
    first_name: str | None = pii_field(PII.DIRECT, description="Given name.")
    last_name: str | None = pii_field(PII.DIRECT, description="Family name.")
    email: str | None = pii_field(PII.CONTACT, description="Normalized email address.")
    phone: str | None = pii_field(PII.CONTACT, description="Phone number in E.164 form.")
    company: str | None = Field(None, description="Company name.")
    title: str | None = Field(None, description="Job title.")
    industry: str | None = Field(None, description="Industry, lower-case slug.")
    country: str | None = Field(
        None, description="ISO 3166-1 alpha-2 country code.", pattern=r"^[A-Z]{2}$"
    )
    city: str | None = Field(None, description="City.")
    lead_source: str | None = Field(None, description="Channel the lead came from (slug).")
    status: str | None = Field(None, description="Lead status in the source system.")
    employees: int | None = Field(None, ge=0, le=10_000_000, description="Company head count.")
    annual_revenue: Decimal | None = Field(
        None, ge=0, le=10**15, description="Company annual revenue."
    )
    website: str | None = Field(None, description="Company website.")
    page_views: int | None = Field(
        None, ge=0, le=100_000_000, description="Web page views by this lead."
    )
    visits: int | None = Field(None, ge=0, le=100_000_000, description="Web sessions by this lead.")
    email_opens: int | None = Field(
        None, ge=0, le=100_000_000, description="Marketing emails opened."
    )
    created_at: datetime | None = Field(None, description="When the lead was created (UTC).")
    updated_at: datetime | None = Field(None, description="Last change in the source (UTC).")
