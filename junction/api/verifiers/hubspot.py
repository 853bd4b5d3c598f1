"""HubSpot webhook signatures (v3, and v1/v2 when explicitly allowed), on the raw body.

v3: ``X-HubSpot-Signature-v3 = base64(HMAC-SHA256(client_secret, method + uri + body +
timestamp))`` with ``X-HubSpot-Request-Timestamp`` in epoch milliseconds, refused outside the
hook's ``tolerance_s`` (both directions).  The URI is the full URL HubSpot called (scheme, host,
path, query): ``public_url`` when a proxy sits in front of the hub, else the URL as received.
HubSpot decodes a few percent-escapes (``%3A`` ``%2F`` ``%3F`` ``%40`` ``%21`` ``%24`` ``%27``
``%28`` ``%29`` ``%2A`` ``%2C`` ``%3B``) before signing, so the URI is tried as given and so
decoded.

v1 (``hex(SHA256(secret + body))``) and v2 (``hex(SHA256(secret + method + uri + body))``) in
``X-HubSpot-Signature`` carry no timestamp: a captured request can be replayed forever.  They are
refused unless the hook sets ``allow_legacy: true``; a request that has a v3 signature is judged
by it alone, so dropping headers cannot downgrade it.

HubSpot events are deduped per item (``eventId``) by the connector, so ``event_id`` is None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from junction.api.verifiers.base import SignatureError, SignedRequest, Verified, VerifierSettings
from junction.core.errors import ConfigError

_TIMESTAMP = re.compile(r"^[0-9]{1,16}$")
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
_MAC_BYTES = 32
# the escapes HubSpot decodes in the URI before it signs (its v3 validation docs)
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile("|".join(_DECODED), re.IGNORECASE)


class HubSpotVerifierOptions(BaseModel):
    """``hooks.<source>.options`` for the ``hubspot`` verifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The URL HubSpot calls (the app's webhook target URL) when a proxy changes "
        "it; by default the URL as the hub received it.",
        examples=["https://hooks.example.com/hooks/hubspot"],
    )
    allow_legacy: bool = Field(
        False,
        description="Also accept v1/v2 signatures (X-HubSpot-Signature). They have no "
        "timestamp, so a captured request can be replayed; prefer v3.",
    )
    previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Client secrets still accepted while the app's secret is rotated.",
    )


def decode_uri(uri: str) -> str:
    """``uri`` with the percent-escapes HubSpot decodes before signing."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group(0).upper()], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature (base64 of the HMAC-SHA256)."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def sign_legacy(secret: str, version: str, method: str, uri: str, body: bytes) -> str:
    """The v1 or v2 signature (hex SHA-256)."""
    if version == "v1":
        source = secret.encode() + body
    else:
        source = secret.encode() + method.upper().encode() + uri.encode() + body
    return hashlib.sha256(source).hexdigest()


class HubSpotVerifier:
    """Verifies HubSpot's ``X-HubSpot-Signature-v3`` (and v1/v2 when allowed)."""

    name: ClassVar[str] = "hubspot"
    options_model: ClassVar[type[BaseModel]] = HubSpotVerifierOptions

    def __init__(self, settings: VerifierSettings) -> None:
        """Keep the app's client secret(s) and the options."""
        options = HubSpotVerifierOptions.model_validate(dict(settings.options))
        if not settings.secret:
            raise ConfigError(
                f"hook {settings.source}: the hubspot verifier needs the app's client secret"
            )
        self._secrets = [settings.secret, *(s.get_secret_value() for s in options.previous_secrets)]
        self.public_url = options.public_url
        self.allow_legacy = options.allow_legacy
        self.tolerance_s = settings.tolerance_s

    def _uris(self, request: SignedRequest) -> list[str]:
        uri = self.public_url or request.url
        return list(dict.fromkeys([uri, decode_uri(uri)]))

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Check the v3 signature and its timestamp (or a legacy one, when allowed)."""
        v3 = request.header("x-hubspot-signature-v3")
        if v3 is not None:
            return self._verify_v3(request, v3, now)
        legacy = request.header("x-hubspot-signature")
        if legacy is None:
            raise SignatureError("missing_header")
        if not self.allow_legacy:
            raise SignatureError("legacy_refused")
        return self._verify_legacy(request, legacy)

    def _verify_v3(self, request: SignedRequest, signature: str, now: float) -> Verified:
        ts_text = request.header("x-hubspot-request-timestamp")
        if ts_text is None:
            raise SignatureError("missing_header")
        if not _TIMESTAMP.match(ts_text):
            raise SignatureError("bad_timestamp")
        sent_ms = int(ts_text)
        if abs(now * 1000 - sent_ms) > self.tolerance_s * 1000:
            raise SignatureError("too_old" if sent_ms < now * 1000 else "too_new", stale=True)
        try:
            given = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("bad_signature") from None
        if len(given) != _MAC_BYTES:
            raise SignatureError("bad_signature")
        matched = False
        for secret in self._secrets:
            for uri in self._uris(request):
                expected = base64.b64decode(
                    sign_v3(secret, request.method, uri, request.body, ts_text)
                )
                # no early exit: the work does not depend on which candidate matched
                matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise SignatureError("no_match")
        return Verified(event_id=None, timestamp=sent_ms / 1000)

    def _verify_legacy(self, request: SignedRequest, signature: str) -> Verified:
        version = (request.header("x-hubspot-signature-version") or "v1").lower()
        if version not in ("v1", "v2"):
            raise SignatureError("unknown_version")
        if not _HEX_DIGEST.match(signature):
            raise SignatureError("bad_signature")
        given = signature.lower().encode()
        uris = self._uris(request) if version == "v2" else [""]
        matched = False
        for secret in self._secrets:
            for uri in uris:
                expected = sign_legacy(secret, version, request.method, uri, request.body)
                matched |= hmac.compare_digest(expected.encode(), given)
        if not matched:
            raise SignatureError("no_match")
        return Verified(event_id=None, timestamp=None)
