"""Canary personal data: values no real record holds, so finding one anywhere is a leak.

Tests push records carrying these through the hub (CSV ingest, the API push, a failing mapping, a
failing delivery, the quarantine); ``tests/pii_canary_plugin.py`` greps every log line of the
session for them in clear.  Each canary is unique enough that a match is never chance.
"""

from __future__ import annotations

CANARY_EMAIL = "zq.canary.leak7@canary-pii.example"
CANARY_EMAIL_2 = "xk.canary.trip3@canary-pii.example"
CANARY_PHONE = "+14155550179"  # the 555-01xx range is fictional: never a person's
CANARY_PHONE_2 = "+447700900417"  # Ofcom's drama range: never assigned to a person
CANARY_FIRST = "Quillonne"
CANARY_LAST = "Vexbarrow"

EMAILS = (CANARY_EMAIL, CANARY_EMAIL_2)
PHONES = (CANARY_PHONE, CANARY_PHONE_2)
NAMES = (CANARY_FIRST, CANARY_LAST)


def needles() -> tuple[str, ...]:
    """The strings no log line may hold: each canary, and each phone's digits without ``+``."""
    return (*EMAILS, *PHONES, *(p.lstrip("+") for p in PHONES), *NAMES)
