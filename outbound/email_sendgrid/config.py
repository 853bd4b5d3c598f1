"""Configuration of the SendGrid email channel (``channels: email_sendgrid.<name>``).

Addresses are checked with email-validator when the config loads (no DNS lookups); display names,
the reply-to address and categories may not hold CR, LF or NUL, so no configured value can add a
header to a message.  Templates compile when the config loads, so a broken template stops the hub
at start instead of failing each delivery.
"""

from __future__ import annotations

import base64
import binascii
from typing import Self

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

from junction.core.errors import ConfigError
from outbound.recipients import check_jmespath, require_recipients
from outbound.template_sets import require_default
from outbound.templates import check_template

CONTROL_CHARS = "\r\n\0"
MAX_CATEGORIES = 10  # SendGrid's limit per message
MAX_CATEGORY_CHARS = 255


def normalize_email(address: str) -> str:
    """Validate one address (syntax only, no DNS) and return it normalized, domain lower-cased.

    The whole address is lower-cased: the suppression list and SendGrid's own lists compare
    addresses case-insensitively, so two spellings must not count as two people.

    Raises:
        ValueError: The address is not a deliverable email address; the message does not repeat it.
    """
    if any(ch in address for ch in CONTROL_CHARS):
        raise ValueError("an email address has a control character")
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("not a valid email address") from None
    return str(checked.normalized).lower()


def _no_controls(value: str, what: str) -> str:
    if any(ch in value for ch in CONTROL_CHARS):
        raise ValueError(f"{what} may not contain CR, LF or NUL")
    return value


class EmailTemplate(BaseModel):
    """One named message template: Jinja2 subject, text body and optional HTML body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="Subject template (text; CR/LF/NUL are stripped after rendering).",
        examples=["Hot lead: {{ record.company_name }} ({{ score.grade }})"],
    )
    text: str = Field(
        ...,
        min_length=1,
        description="Plain-text body template (not escaped).",
        examples=["{{ record.email }} scored {{ score.value }}"],
    )
    html: str | None = Field(
        None,
        description="HTML body template; every value is HTML-escaped unless marked safe.",
    )

    @field_validator("subject", "text")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            return check_template(value)
        except ConfigError as exc:
            raise ValueError(exc.user_message) from None

    @field_validator("html")
    @classmethod
    def _html_compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_template(value, html=True)
        except ConfigError as exc:
            raise ValueError(exc.user_message) from None


class SendGridEmailConfig(BaseModel):
    """Send each delivery as an email through SendGrid's v3 Mail Send API."""

    # inputs stay out of validation errors: a rejected API key must not be echoed into logs
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    api_key: SecretStr = Field(
        ...,
        description="SendGrid API key with the Mail Send permission (use ${env:...}).",
        examples=["${env:SENDGRID_API_KEY}"],
    )
    host: HttpUrl = Field(
        HttpUrl("https://api.sendgrid.com"),
        description="API base URL (https://api.eu.sendgrid.com for EU data residency).",
    )
    from_email: str = Field(..., description="Sender address (a verified SendGrid sender).")
    from_name: str | None = Field(None, max_length=256, description="Sender display name.")
    reply_to: str | None = Field(None, description="Reply-To address.")
    to: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Static recipients; each receives their own copy (addresses stay private).",
        examples=[["sales@example.com"]],
    )
    to_path: str | None = Field(
        None,
        description="JMESPath over the delivery event giving one address or a list of them "
        "(added to 'to'); e.g. record.email or record.owner_email.",
        examples=["record.email"],
    )
    categories: list[str] = Field(
        default_factory=list,
        max_length=MAX_CATEGORIES,
        description="SendGrid categories for statistics (at most 10).",
    )
    templates: dict[str, EmailTemplate] = Field(
        ...,
        description="Named templates; 'default' is required. A route picks one by name "
        "(route 'template:'), digests use the route's digest template.",
    )
    timeout_s: float = Field(
        15.0, gt=0, le=300, description="Total time allowed for one send, seconds."
    )
    max_in_flight: int = Field(
        8, ge=1, le=64, description="Most sends in progress at once (each uses a worker thread)."
    )
    event_public_key: str | None = Field(
        None,
        description="Signed Event Webhook verification key (base64 DER of the P-256 public key, "
        "from Mail Settings). Enables POST /callbacks/sendgrid/<channel>.",
    )
    event_tolerance_s: int = Field(
        300,
        ge=10,
        le=86400,
        description="Event webhook replay window: the signed timestamp must be this close to now.",
    )

    @field_validator("from_email", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else normalize_email(value)

    @field_validator("to")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_email(v) for v in values))

    @field_validator("from_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _no_controls(value, "from_name")

    @field_validator("categories")
    @classmethod
    def _categories(cls, values: list[str]) -> list[str]:
        for value in values:
            _no_controls(value, "a category")
            if not value.strip() or len(value) > MAX_CATEGORY_CHARS:
                raise ValueError(f"a category must have 1-{MAX_CATEGORY_CHARS} characters")
        return list(dict.fromkeys(values))

    @field_validator("to_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return check_jmespath(value)

    @field_validator("templates")
    @classmethod
    def _default(cls, value: dict[str, EmailTemplate]) -> dict[str, EmailTemplate]:
        return require_default(value)

    @field_validator("event_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value is not None:
            load_event_key(value)
        return value

    @model_validator(mode="after")
    def _someone(self) -> Self:
        require_recipients(self.to, self.to_path)
        return self


def load_event_key(text: str) -> ec.EllipticCurvePublicKey:
    """Decode an Event Webhook verification key (base64 DER SubjectPublicKeyInfo, P-256).

    Raises:
        ValueError: Not base64 DER, not an EC key, or not on P-256.
    """
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        key = load_der_public_key(der)
    except (binascii.Error, ValueError):
        raise ValueError("event_public_key is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("event_public_key must be an ECDSA P-256 key")
    return key
