"""Contact: a known person at an account."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.base import PII, CanonicalModel, pii_field


class Contact(CanonicalModel):
    """A person at a customer or partner account."""

    schema_version: Literal["contact.v1"] = "contact.v1"
    external_id: str | None = Field(None, description="The contact's id in its source system.")
    account_external_id: str | None = Field(None, description="Source id of the contact's account.")
    first_name: str | None = pii_field(PII.DIRECT, description="Given name.")
    last_name: str | None = pii_field(PII.DIRECT, description="Family name.")
    email: str | None = pii_field(PII.CONTACT, description="Normalized email address.")
    phone: str | None = pii_field(PII.CONTACT, description="Phone number in E.164 form.")
    mobile: str | None = pii_field(PII.CONTACT, description="Mobile number in E.164 form.")
    title: str | None = Field(None, description="Job title.")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2.", pattern=r"^[A-Z]{2}$")
    city: str | None = Field(None, description="City.")
    updated_at: datetime | None = Field(None, description="Last change in the source (UTC).")
