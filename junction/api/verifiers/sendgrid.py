"""SendGrid's Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``.

The signature (``X-Twilio-Email-Event-Webhook-Signature``, base64 DER) is checked with the
sendgrid SDK's ``EventWebhook`` on the body exactly as received: re-serialized JSON, or a body
without its trailing CRLF, does not verify.  SendGrid documents no freshness check; this verifier
refuses a ``X-Twilio-Email-Event-Webhook-Timestamp`` more than ``tolerance_s`` (default 300 s)
away from now in either direction, so a captured request cannot be replayed later.

Events carry their own ids (``sg_event_id``), deduplicated per event by the receiver, so
``event_id`` is None.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sendgrid.helpers.eventwebhook import EventWebhook

from junction.api.verifiers.base import SignatureError, SignedRequest, Verified, VerifierSettings
from junction.core.errors import ConfigError
from outbound.email_sendgrid.config import load_event_key

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_MAX_SIGNATURE_CHARS = 200  # a P-256 DER signature is at most 72 bytes (96 base64 characters)


class SendGridEventsOptions(BaseModel):
    """``hooks.<source>.options`` (or a channel's settings) for the ``sendgrid_events`` verifier."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    public_key: str = Field(
        ...,
        description="The Event Webhook verification key from SendGrid's Mail Settings (base64 "
        "DER SubjectPublicKeyInfo of a P-256 key).",
    )

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        load_event_key(value)
        return "".join(value.split())


class SendGridEventsVerifier:
    """Verifies SendGrid's signed event webhook on the raw body, with a replay window."""

    name: ClassVar[str] = "sendgrid_events"
    options_model: ClassVar[type[BaseModel]] = SendGridEventsOptions

    def __init__(self, settings: VerifierSettings) -> None:
        """Load the verification key from ``options.public_key``.

        Raises:
            ConfigError: The key is missing or is not a base64 DER P-256 public key.
        """
        try:
            options = SendGridEventsOptions.model_validate(dict(settings.options))
        except ValidationError:
            raise ConfigError(
                f"{settings.source}: the sendgrid_events verifier needs the Event Webhook "
                "verification key (base64 DER of a P-256 public key) as public_key"
            ) from None
        self._webhook = EventWebhook(public_key=options.public_key)
        self.tolerance_s = settings.tolerance_s

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Check the timestamp window, then the signature over ``timestamp + body``."""
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if signature is None or timestamp is None:
            raise SignatureError("missing_header")
        if not _TIMESTAMP.match(timestamp):
            raise SignatureError("bad_timestamp")
        sent = int(timestamp)
        if abs(now - sent) > self.tolerance_s:
            raise SignatureError("too_old" if sent < now else "too_new", stale=True)
        if len(signature) > _MAX_SIGNATURE_CHARS:
            raise SignatureError("bad_signature")
        try:
            base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("bad_signature") from None
        try:
            # the SDK signs text; a strict round trip keeps the bytes exactly as received
            payload = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("not_utf8") from None
        try:
            valid = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, TypeError):
            valid = False  # a malformed DER signature
        if not valid:
            raise SignatureError("no_match")
        return Verified(event_id=None, timestamp=float(sent))
