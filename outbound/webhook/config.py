"""Configuration of the webhook channel (Standard Webhooks signing, one endpoint per config).

Secrets follow the Standard Webhooks format, ``whsec_`` + base64 of at least 24 random bytes.
Rotation works by listing the retired secrets in ``previous_secrets``: every active secret signs
each request, so a receiver that knows either the old or the new secret keeps verifying while it
switches over.  A previous secret given as ``{secret, expires_at}`` stops signing at ``expires_at``
(judged by the channel's clock at each send, so no reload is needed); a plain one signs until it is
removed from the config.  The current secret always signs.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import time
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
MIN_SECRET_BYTES = 24

# headers the channel owns: a static header must not replace the signature, the idempotency key or
# the framing, or the receiver would verify (or parse) something other than what was signed
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
    }
)

# RFC 9110 token characters, the only ones allowed in a header name
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def generate_secret(num_bytes: int = 32) -> str:
    """Return a new signing secret in the Standard Webhooks format.

    Args:
        num_bytes: How many random bytes to draw (at least 24).

    Returns:
        ``"whsec_"`` followed by the base64 of ``num_bytes`` bytes from the OS CSPRNG.
    """
    if num_bytes < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret needs at least {MIN_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def secret_key_bytes(secret: str) -> bytes:
    """Decode a ``whsec_`` secret into its key bytes, checking format and length.

    Args:
        secret: The secret as configured, prefix included.

    Returns:
        The HMAC key.

    Raises:
        ValueError: The secret lacks the prefix, is not base64, or is shorter than 24 bytes.  The
            message never repeats the secret.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    # accept unpadded base64 as the standardwebhooks library does, but nothing else
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret must be base64 after the whsec_ prefix") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret must encode at least {MIN_SECRET_BYTES} bytes")
    return key


Secret = Annotated[SecretStr, Field(description="A whsec_ signing secret.")]


class PreviousSecret(BaseModel):
    """A rotated-out secret that keeps signing until ``expires_at`` (the rotation's overlap)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    secret: SecretStr = Field(description="The old whsec_ signing secret.")
    expires_at: AwareDatetime = Field(
        description="When it stops signing: an ISO 8601 date-time with a UTC offset, typically "
        "24 h after the new secret was put in place.",
        examples=["2026-12-03T09:00:00Z"],
    )

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr) -> SecretStr:
        secret_key_bytes(secret.get_secret_value())
        return secret


class WebhookConfig(BaseModel):
    """One webhook endpoint: where to POST and how to sign.

    Redirects are never followed (there is deliberately no option for it): a redirect could move a
    signed payload to a host nobody configured.
    """

    # inputs stay out of validation errors: a rejected secret must not be echoed into logs
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: HttpUrl = Field(
        description="Receiver URL; http or https only. Redirect answers are never followed.",
        examples=["https://crm.example/hooks/lead"],
    )
    secret: SecretStr = Field(
        description="Current signing secret: 'whsec_' + base64 of at least 24 random bytes "
        "(see generate_secret()). Reference it from the environment, never inline it.",
        examples=["${env:SALES_HOOK_SECRET}"],
    )
    previous_secrets: list[Secret | PreviousSecret] = Field(
        default_factory=list,
        max_length=8,
        description="Secrets being rotated out: plain secrets, or {secret, expires_at} to end "
        "the overlap at a set time. Each active secret adds one v1 signature, so a receiver "
        "holding either the old or the new secret verifies during the switch.",
        examples=[[{"secret": "${env:OLD_SALES_HOOK_SECRET}", "expires_at": "2026-12-03T09:00Z"}]],
    )
    timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Total time allowed for one attempt (connect, send, read the answer), seconds.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra static headers sent with every request (e.g. a receiver API key). "
        "Values are treated as secrets (masked in logs and errors). May not override the "
        "webhook-*, content-* or framing headers.",
        examples=[{"authorization": "${env:SALES_HOOK_TOKEN}"}],
    )
    max_connections: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Most connections (and so concurrent requests) open to the receiver.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: HttpUrl) -> HttpUrl:
        if url.host is None:
            raise ValueError("the webhook URL needs a host")
        # credentials in the URL would end up in reprs and logs; headers keep them masked
        if url.username or url.password:
            raise ValueError("put credentials in 'headers', not in the webhook URL")
        return url

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr) -> SecretStr:
        secret_key_bytes(secret.get_secret_value())
        return secret

    @field_validator("previous_secrets")
    @classmethod
    def _check_previous(
        cls, values: list[SecretStr | PreviousSecret]
    ) -> list[SecretStr | PreviousSecret]:
        for value in values:
            if isinstance(value, SecretStr):
                secret_key_bytes(value.get_secret_value())
        return values

    @model_validator(mode="after")
    def _distinct_secrets(self) -> WebhookConfig:
        keys = [secret_key_bytes(s) for s, _ in self.signing_secrets()]
        if len(set(keys)) != len(keys):
            raise ValueError("the current and previous webhook secrets must all differ")
        return self

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret_value in headers.items():
            value = secret_value.get_secret_value()
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the channel and cannot be overridden")
            # CR/LF would let a value smuggle extra headers into the request
            if any(ch in value for ch in "\r\n\0"):
                raise ValueError(f"header {name!r} has a control character in its value")
        return headers

    def signing_secrets(self) -> list[tuple[str, float | None]]:
        """Return every configured secret with the Unix time it stops signing (None: never).

        The current secret comes first and never expires.
        """
        out: list[tuple[str, float | None]] = [(self.secret.get_secret_value(), None)]
        for prev in self.previous_secrets:
            if isinstance(prev, PreviousSecret):
                out.append((prev.secret.get_secret_value(), prev.expires_at.timestamp()))
            else:
                out.append((prev.get_secret_value(), None))
        return out

    def active_secrets(self, now: float | None = None) -> list[str]:
        """Return the secrets that sign at ``now`` (default: the current time), current first."""
        at = time.time() if now is None else now
        return [
            s for s, expires_at in self.signing_secrets() if expires_at is None or at < expires_at
        ]

    def static_headers(self) -> dict[str, str]:
        """Return the configured extra headers with their values revealed (for the wire only)."""
        return {name: value.get_secret_value() for name, value in self.headers.items()}
