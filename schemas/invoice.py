"""Invoice with its lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import Field

from schemas.base import CanonicalModel


class InvoiceLine(CanonicalModel):
    """One line of an invoice."""

    line_no: int = Field(..., ge=1, description="Line number, from 1.")
    product_external_id: str | None = Field(None, description="Source id of the product.")
    description: str | None = Field(None, description="Line text.")
    quantity: Decimal = Field(..., description="Quantity invoiced.")
    unit_price: Decimal | None = Field(None, description="Price per unit.")
    amount: Decimal | None = Field(None, description="Line amount, net.")
    tax_amount: Decimal | None = Field(None, description="Tax on the line.")


class Invoice(CanonicalModel):
    """An invoice (SAP INVOIC02, 1C счёт-фактура)."""

    schema_version: Literal["invoice.v1"] = "invoice.v1"
    external_id: str = Field(..., min_length=1, description="The invoice's id in its source.")
    number: str | None = Field(None, description="Invoice number.")
    issued_on: date | None = Field(None, description="Issue date.")
    due_on: date | None = Field(None, description="Due date.")
    account_external_id: str | None = Field(None, description="Source id of the billed account.")
    order_external_id: str | None = Field(None, description="Source id of the order.")
    currency: str | None = Field(None, description="ISO 4217 currency code.", pattern=r"^[A-Z]{3}$")
    net_total: Decimal | None = Field(None, description="Total before tax.")
    tax_total: Decimal | None = Field(None, description="Tax total.")
    gross_total: Decimal | None = Field(None, description="Total with tax.")
    lines: list[InvoiceLine] = Field(default_factory=list, description="Invoice lines.")
