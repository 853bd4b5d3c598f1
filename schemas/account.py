"""Account: a company (customer, prospect, partner, counterparty)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from schemas.base import PII, CanonicalModel, pii_field


class Account(CanonicalModel):
    """A company known to a CRM or ERP."""

    schema_version: Literal["account.v1"] = "account.v1"
    external_id: str | None = Field(None, description="The account's id in its source system.")
    name: str = Field(..., min_length=1, description="Legal or display name.")
    tax_id: str | None = Field(None, description="Tax number (INN, VAT id, EIN).")
    industry: str | None = Field(None, description="Industry, lower-case slug.")
    website: str | None = Field(None, description="Website.")
    phone: str | None = pii_field(PII.CONTACT, description="Main phone in E.164 form.")
    email: str | None = pii_field(PII.CONTACT, description="Main email address.")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2.", pattern=r"^[A-Z]{2}$")
    city: str | None = Field(None, description="City.")
    address: str | None = pii_field(PII.CONTACT, description="Postal address (one line).")
    employees: int | None = Field(None, ge=0, le=10_000_000, description="Head count.")
    annual_revenue: Decimal | None = Field(None, ge=0, le=10**15, description="Annual revenue.")
    updated_at: datetime | None = Field(None, description="Last change in the source (UTC).")
