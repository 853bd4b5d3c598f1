"""Canonical business entities: what every connector's records are mapped into."""

from schemas.account import Account
from schemas.base import PII, CanonicalModel
from schemas.contact import Contact
from schemas.envelope import ENTITY_MODELS, Entity, Envelope, Provenance
from schemas.invoice import Invoice, InvoiceLine
from schemas.lead import Lead
from schemas.order import Order, OrderLine
from schemas.product import Product
from schemas.score import Factor, Reason, Score

__all__ = [
    "ENTITY_MODELS",
    "PII",
    "Account",
    "CanonicalModel",
    "Contact",
    "Entity",
    "Envelope",
    "Factor",
    "Invoice",
    "InvoiceLine",
    "Lead",
    "Order",
    "OrderLine",
    "Product",
    "Provenance",
    "Reason",
    "Score",
]
