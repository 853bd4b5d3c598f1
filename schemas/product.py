"""Product: an item sold, with price and stock."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from schemas.base import CanonicalModel


class Product(CanonicalModel):
    """A catalogue item (CommerceML Товар, SAP material, CRM product)."""

    schema_version: Literal["product.v1"] = "product.v1"
    external_id: str = Field(..., min_length=1, description="The product's id in its source.")
    sku: str | None = Field(None, description="Article / SKU.")
    name: str = Field(..., min_length=1, description="Display name.")
    description: str | None = Field(None, description="Description.")
    unit: str | None = Field(None, description="Unit of measure (code or name).")
    price: Decimal | None = Field(None, ge=0, description="Unit price.")
    currency: str | None = Field(None, description="ISO 4217 currency code.", pattern=r"^[A-Z]{3}$")
    stock: Decimal | None = Field(None, description="Quantity in stock.")
    category: str | None = Field(None, description="Category name or id.")
    deleted: bool = Field(False, description="Marked for deletion in the source.")
    updated_at: datetime | None = Field(None, description="Last change in the source (UTC).")
