"""Signed Event Webhook requests made exactly as SendGrid makes them, with a local key pair.

SendGrid signs ``timestamp + raw_body`` with ECDSA P-256 / SHA-256 and sends the base64 of the DER
signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the timestamp (Unix seconds) in
``X-Twilio-Email-Event-Webhook-Timestamp``.  The verification key shown in SendGrid's Mail
Settings is the base64 DER SubjectPublicKeyInfo, which ``EventSigner.public_key_b64`` gives.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class EventSigner:
    """A fresh P-256 key pair that signs event webhook bodies."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key_b64(self) -> str:
        """The verification key as SendGrid shows it (base64 DER SubjectPublicKeyInfo)."""
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: int | str) -> str:
        """The signature header value for ``body`` sent at ``timestamp``."""
        signed = str(timestamp).encode() + body
        return base64.b64encode(self._key.sign(signed, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The request headers SendGrid sends with ``body``."""
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.sign(body, ts),
            TIMESTAMP_HEADER: str(ts),
        }


def event(kind: str, email: str, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it; custom args (``delivery_id=...``) go at the top level."""
    message_id = fields.pop("message_id", secrets.token_urlsafe(16)[:22])
    out: dict[str, Any] = {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": secrets.token_urlsafe(16)[:22],
        "sg_message_id": f"{message_id}.filterdrecv-5645d9c87f-6r2ch-1-5F5E0B1A-2B.0",
        "smtp-id": f"<{message_id}@ismtpd0001p1lon1.sendgrid.net>",
    }
    if kind == "bounce":
        out.update(type="bounce", status="5.1.1", reason="550 5.1.1 mailbox unavailable")
    out.update(fields)
    return out


def events_body(events: list[dict[str, Any]]) -> bytes:
    """The raw body: a JSON array, ended by CRLF as SendGrid sends it."""
    return orjson.dumps(events) + b"\r\n"
