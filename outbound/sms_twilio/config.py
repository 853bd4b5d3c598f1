"""Configuration of the Twilio SMS channel (one Twilio account and sender per config)."""

from __future__ import annotations

from datetime import time
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
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
from outbound.sms_twilio.phones import is_region, to_e164
from outbound.sms_twilio.quiet_hours import QuietWindow, parse_clock, zone_of
from outbound.template_sets import require_default
from outbound.templates import check_template


def _check_public_url(url: HttpUrl | None) -> HttpUrl | None:
    if url is not None and (url.username or url.password):
        raise ValueError("a callback URL may not carry credentials")
    return url


class SmsTemplate(BaseModel):
    """One message template (Jinja2 text, rendered in a sandbox over the event)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    body: str = Field(
        min_length=1,
        max_length=4000,
        description="The SMS text, a Jinja2 template over the event (record, score, ...).",
        examples=["Hot lead {{ record.name }} ({{ score.grade }})"],
    )

    @field_validator("body")
    @classmethod
    def _compiles(cls, body: str) -> str:
        try:
            return check_template(body)
        except ConfigError as exc:
            raise ValueError(exc.user_message) from None


class QuietHours(BaseModel):
    """Hours in the recipient's own time zone in which no SMS goes out (the send is deferred)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(
        description="Start of the quiet window, HH:MM local time.", examples=["21:00"]
    )
    end: str = Field(description="End of the quiet window, HH:MM local time.", examples=["08:00"])
    timezone_path: str | None = Field(
        None,
        description="JMESPath over the event to the recipient's IANA zone (e.g. record.timezone); "
        "applies to recipients found by to_path.",
        examples=["record.timezone"],
    )
    default_timezone: str = Field(
        "UTC",
        description="IANA zone used when the event names none (or an unknown one) and the "
        "number's own numbering plan does not name exactly one.",
        examples=["Europe/Berlin"],
    )

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("timezone_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return check_jmespath(value)

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if zone_of(value) is None:
            raise ValueError("not a known IANA time zone")
        return value

    @model_validator(mode="after")
    def _window_ok(self) -> QuietHours:
        self.window  # noqa: B018 - builds (and so checks) the window
        return self

    @cached_property
    def window(self) -> QuietWindow:
        """The window as times of day."""
        start: time = parse_clock(self.start)
        return QuietWindow(start, parse_clock(self.end))


class TwilioSmsConfig(BaseModel):
    """One Twilio account, sender and recipient rule.

    The delivery's id travels in the StatusCallback URL (``?delivery_id=``), so a status callback
    maps back to its delivery.  Twilio has no idempotency key for sends: a crash after Twilio
    accepted a message and before the hub recorded it can send that SMS once more.
    """

    # inputs stay out of validation errors: tokens and phone numbers must not reach logs
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    account_sid: str = Field(
        pattern=r"^AC[0-9a-fA-F]{32}$",
        description="The Twilio account SID (AC...).",
        examples=["AC0123456789abcdef0123456789abcdef"],
    )
    auth_token: SecretStr = Field(
        min_length=8,
        description="The account's auth token; also verifies Twilio's callbacks. "
        "Reference it from the environment, never inline it.",
        examples=["${env:TWILIO_AUTH_TOKEN}"],
    )
    from_: str | None = Field(
        None,
        validation_alias=AliasChoices("from", "from_"),
        serialization_alias="from",
        description="The sending number, E.164. Give this or messaging_service_sid.",
        examples=["+15017122661"],
    )
    messaging_service_sid: str | None = Field(
        None,
        pattern=r"^MG[0-9a-fA-F]{32}$",
        description="A Messaging Service (MG...) that picks the sender from its pool.",
    )
    to: list[str] = Field(
        default_factory=list,
        max_length=100,
        repr=False,  # phone numbers are personal data
        description="Static recipients (E.164, or national numbers in default_region).",
        examples=[["+15558675310"]],
    )
    to_path: str | None = Field(
        None,
        description="JMESPath over the event to the recipient's number (a string or a list).",
        examples=["record.phone"],
    )
    default_region: str | None = Field(
        None,
        description="ISO 3166 region for numbers written without a country code (e.g. GB).",
        examples=["GB"],
    )
    templates: dict[str, SmsTemplate] = Field(
        description="Named message templates; 'default' is required, routes pick others by name.",
    )
    status_callback: HttpUrl | None = Field(
        None,
        description="The public URL of this channel's /callbacks/twilio/<channel>/status; the "
        "delivery id is added as ?delivery_id=. Default: public_url + that path.",
        examples=["https://hub.example.com/callbacks/twilio/sms_twilio.oncall/status"],
    )
    public_url: HttpUrl | None = Field(
        None,
        description="The hub's public base URL as Twilio calls it (scheme, host, port, path "
        "prefix). Callbacks are verified against it plus the request path and query; without "
        "it, against the URL the hub received (wrong behind a proxy).",
        examples=["https://hub.example.com"],
    )
    api_base: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Send API requests here instead of https://api.twilio.com (a local fake, a "
        "gateway). Default: Twilio itself.",
    )
    timeout_s: float = Field(
        15.0, gt=0, le=120, description="Connect and read timeout of one API request, seconds."
    )
    max_segments: int = Field(
        10, ge=1, le=30, description="Longer messages are refused (RecordError), not sent."
    )
    max_concurrency: int = Field(
        8, ge=1, le=64, description="API requests in flight at once (each runs in a thread)."
    )
    quiet_hours: QuietHours | None = Field(
        None, description="Local hours in which sends are deferred until the window ends."
    )
    zone_from_number: bool = Field(
        True,
        description="Use a number's own time zone for quiet hours when its numbering plan "
        "names exactly one (+44 → Europe/London), before default_timezone.",
    )

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        e164 = to_e164(value)
        if e164 is None:
            raise ValueError("the sender must be a valid E.164 number")
        return e164

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not is_region(value.upper()):
            raise ValueError("not a region phonenumbers knows (use ISO 3166 alpha-2, e.g. GB)")
        return None if value is None else value.upper()

    @field_validator("to_path")
    @classmethod
    def _to_path(cls, value: str | None) -> str | None:
        return check_jmespath(value)

    @field_validator("templates")
    @classmethod
    def _default_template(cls, value: dict[str, SmsTemplate]) -> dict[str, SmsTemplate]:
        return require_default(value)

    @field_validator("status_callback", "public_url")
    @classmethod
    def _urls(cls, value: HttpUrl | None) -> HttpUrl | None:
        return _check_public_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> TwilioSmsConfig:
        if self.from_ is None and self.messaging_service_sid is None:
            raise ValueError("give 'from' or 'messaging_service_sid'")
        require_recipients(self.to, self.to_path)
        for i, number in enumerate(self.to):
            if to_e164(number, self.default_region) is None:
                raise ValueError(f"to[{i}] is not a valid phone number")
        return self

    @cached_property
    def static_recipients(self) -> list[str]:
        """``to`` in E.164, without duplicates."""
        out = (to_e164(n, self.default_region) for n in self.to)
        return list(dict.fromkeys(n for n in out if n is not None))

    @cached_property
    def public_base(self) -> str | None:
        """``public_url`` without a trailing slash."""
        return None if self.public_url is None else str(self.public_url).rstrip("/")

    def api_base_url(self) -> str | None:
        """``api_base`` without a trailing slash, and checked to have a host."""
        if self.api_base is None:
            return None
        if not urlsplit(self.api_base).hostname:
            raise ConfigError("api_base needs a host")
        return self.api_base.rstrip("/")

    def describe(self) -> dict[str, Any]:
        """A log-safe summary (no token, no numbers)."""
        return {
            "account_sid": self.account_sid,
            "sender": "messaging_service" if self.from_ is None else "number",
            "static_recipients": len(self.to),
            "to_path": self.to_path,
        }
