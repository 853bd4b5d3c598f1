"""Inbound webhook verifiers: one class per signing scheme, found through a registry."""

from __future__ import annotations

from junction.api.verifiers.base import (
    SignatureError,
    SignedRequest,
    Verified,
    Verifier,
    VerifierSettings,
)
from junction.api.verifiers.registry import VerifierRegistry, default_verifiers

__all__ = [
    "SignatureError",
    "SignedRequest",
    "Verified",
    "Verifier",
    "VerifierRegistry",
    "VerifierSettings",
    "default_verifiers",
]
