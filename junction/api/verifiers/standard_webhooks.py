"""Standard Webhooks (and Svix) HMAC-SHA256 signatures, verified on the raw body.

Signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``; the signature header holds one or
more space-separated ``v1,<base64 mac>`` entries (several while the sender rotates its secret), and
any one matching is enough.  The ``standardwebhooks`` package decodes the secret and computes the
HMAC; the replay window is enforced here because the package's is fixed at five minutes, and the
MAC is computed over the body bytes exactly as received (the package's ``verify`` decodes them as
text first).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, hmac_data

from junction.api.verifiers.base import SignatureError, SignedRequest, Verified, VerifierSettings
from junction.core.errors import ConfigError

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_MSG_ID = re.compile(r"^[!-~]{1,200}$")  # printable ASCII, no spaces; fits the dedupe key column
_MAX_SIGNATURES = 16  # bounds the work one request can cause
_MAC_BYTES = 32


class StandardWebhooksOptions(BaseModel):
    """``hooks.<source>.options`` for the ``standard_webhooks`` verifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header_prefix: Literal["webhook", "svix"] = Field(
        "webhook", description="Header names: webhook-id/... (the spec) or svix-id/... (Svix)."
    )
    previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Secrets still accepted while this side rotates (use ${env:...}).",
    )


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_``-prefixed (or bare) base64 secret, as the package decodes it."""
    try:
        # the package's own decoding (prefix, padding); its key is kept on a private attribute
        return Webhook(secret)._whsecret
    except (binascii.Error, ValueError, EmptyWebhookSecretError, RuntimeError):
        raise ConfigError("the webhook secret is not valid base64 (whsec_...)") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The raw v1 MAC of one message."""
    return hmac_data(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body))


class StandardWebhooksVerifier:
    """Verifies ``webhook-id``/``webhook-timestamp``/``webhook-signature`` (v1, symmetric)."""

    name: ClassVar[str] = "standard_webhooks"
    options_model: ClassVar[type[BaseModel]] = StandardWebhooksOptions

    def __init__(self, settings: VerifierSettings) -> None:
        """Decode the hook's secret (and any previous ones) into HMAC keys."""
        options = StandardWebhooksOptions.model_validate(dict(settings.options))
        if not settings.secret:
            raise ConfigError(f"hook {settings.source}: standard_webhooks needs a secret")
        secrets = [settings.secret, *(s.get_secret_value() for s in options.previous_secrets)]
        self._keys = [secret_key(s) for s in secrets]
        self.tolerance_s = settings.tolerance_s
        prefix = options.header_prefix
        self._h_id, self._h_ts, self._h_sig = (
            f"{prefix}-id",
            f"{prefix}-timestamp",
            f"{prefix}-signature",
        )

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Check the headers, the replay window and the signatures; return the message id."""
        msg_id = request.header(self._h_id)
        ts_text = request.header(self._h_ts)
        sig_header = request.header(self._h_sig)
        if msg_id is None or ts_text is None or sig_header is None:
            raise SignatureError("missing_header")
        if not _MSG_ID.match(msg_id):
            raise SignatureError("bad_id")
        if not _TIMESTAMP.match(ts_text):
            raise SignatureError("bad_timestamp")
        timestamp = int(ts_text)
        if abs(now - timestamp) > self.tolerance_s:
            raise SignatureError("too_old" if timestamp < now else "too_new", stale=True)
        expected = [sign(key, msg_id, timestamp, request.body) for key in self._keys]
        matched = False
        for entry in sig_header.split()[:_MAX_SIGNATURES]:
            version, _, value = entry.partition(",")
            if version != "v1":
                continue  # v1a (ed25519) and unknown versions are not ours to accept
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(given) != _MAC_BYTES:
                continue
            for mac in expected:
                # no early exit on a match: the work done does not depend on which entry matched
                matched |= hmac.compare_digest(mac, given)
        if not matched:
            raise SignatureError("no_match")
        return Verified(event_id=msg_id, timestamp=float(timestamp))
