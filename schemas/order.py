"""Order with its lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from schemas.base import PII, CanonicalModel, pii_field


class OrderLine(CanonicalModel):
    """One line of an order."""

    line_no: int = Field(..., ge=1, description="Line number, from 1.")
    product_external_id: str | None = Field(None, description="Source id of the product.")
    sku: str | None = Field(None, description="Article / SKU.")
    name: str | None = Field(None, description="Product name as ordered.")
    quantity: Decimal = Field(..., description="Quantity ordered.")
    unit: str | None = Field(None, description="Unit of measure.")
    unit_price: Decimal | None = Field(None, description="Price per unit.")
    amount: Decimal | None = Field(None, description="Line amount.")


class Order(CanonicalModel):
    """A sales order (CommerceML Документ, SAP ORDERS05, CRM opportunity products)."""

    schema_version: Literal["order.v1"] = "order.v1"
    external_id: str = Field(..., min_length=1, description="The order's id in its source.")
    number: str | None = Field(None, description="Order number shown to people.")
    ordered_at: datetime | None = Field(None, description="When the order was placed (UTC).")
    account_external_id: str | None = Field(None, description="Source id of the buyer account.")
    customer_name: str | None = pii_field(PII.DIRECT, description="Buyer name as on the order.")
    customer_email: str | None = pii_field(PII.CONTACT, description="Buyer email.")
    currency: str | None = Field(None, description="ISO 4217 currency code.", pattern=r"^[A-Z]{3}$")
    total: Decimal | None = Field(None, description="Order total.")
    status: str | None = Field(None, description="Order status in the source.")
    lines: list[OrderLine] = Field(default_factory=list, description="Order lines.")
