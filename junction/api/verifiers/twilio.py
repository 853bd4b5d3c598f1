"""Twilio webhook signatures (``X-Twilio-Signature``), checked with the SDK's RequestValidator.

Twilio signs the exact URL it called plus the form parameters sorted by name:
``base64(HMAC-SHA1(auth_token, url + name1 + value1 + ...))``.  Behind a proxy or TLS terminator
the URL the hub receives is not the one Twilio called, so ``public_url`` (the hub's public base:
scheme, host, optional port and path prefix) replaces the received scheme, host and prefix; the
path and query are kept as received.  The SDK tries the URL with and without the default port,
since Twilio is not consistent about it.  A JSON webhook carries ``bodySHA256`` in the query: the
body's SHA-256 must match it and the URL alone is signed.

Only the Auth Token scheme (HMAC-SHA1) is supported: a request signed with a Webhook Rules
shared key (``X-Twilio-Webhooks-Signature-Settings``) is refused.  Twilio signatures carry no
timestamp, so replays are caught by the callers' dedupe keys (``MessageSid``), not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from twilio.request_validator import (
    HMAC_SHA1,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from junction.api.verifiers.base import SignatureError, SignedRequest, Verified, VerifierSettings
from junction.core.errors import ConfigError

SIGNATURE_HEADER = "x-twilio-signature"
MAX_SIGNATURE_CHARS = 128


class FormParams(dict[str, str]):
    """Form parameters with every value of a repeated name (the SDK reads ``getall``)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Keep the first value per name as the dict value, and all of them for ``getall``."""
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for name, value in pairs:
            self._all.setdefault(name, []).append(value)
            self.setdefault(name, value)

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in the order sent."""
        return list(self._all.get(name, []))


class TwilioVerifierOptions(BaseModel):
    """``hooks.<source>.options`` for the ``twilio`` verifier (and each Twilio channel's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The hub's public base URL as Twilio calls it (scheme, host, port, path "
        "prefix); the request's path and query are appended. Default: the URL as received.",
        examples=["https://hub.example.com"],
    )


def signed_url(received: str, public_url: str | None) -> str:
    """The URL Twilio signed: ``public_url`` + the received path and query (or ``received``)."""
    if public_url is None:
        return received
    parts = urlsplit(received)
    return public_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def form_of(request: SignedRequest) -> FormParams:
    """The parameters Twilio sent: the urlencoded form, or a JSON object's string fields.

    Raises:
        SignatureError: The body is not UTF-8 (Twilio always sends UTF-8).
    """
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("bad_encoding") from None
    if _body_hash(request.url) is not None:
        try:
            data = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            return FormParams([])
        if not isinstance(data, dict):
            return FormParams([])
        return FormParams((k, v) for k, v in data.items() if isinstance(v, str))
    return FormParams(parse_qsl(text, keep_blank_values=True))


def _body_hash(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("bodySHA256")
    return values[0] if values else None


class TwilioVerifier:
    """Checks ``X-Twilio-Signature`` against the account's auth token."""

    name: ClassVar[str] = "twilio"
    options_model: ClassVar[type[BaseModel]] = TwilioVerifierOptions

    def __init__(self, settings: VerifierSettings) -> None:
        """Use ``settings.secret`` (the auth token) and ``options.public_url``."""
        if not settings.secret:
            raise ConfigError(f"hook {settings.source}: the twilio verifier needs the auth token")
        try:
            options = TwilioVerifierOptions.model_validate(dict(settings.options))
        except ValidationError:
            raise ConfigError(
                f"hook {settings.source}: invalid options for verifier 'twilio' (public_url)"
            ) from None
        self.public_url = options.public_url
        self._validator = RequestValidator(settings.secret)

    def url_of(self, request: SignedRequest) -> str:
        """The URL the signature covers."""
        return signed_url(request.url, self.public_url)

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        """Accept ``request`` only when its signature matches (``now`` is unused: no timestamp).

        Raises:
            SignatureError: missing_header, unsupported_algorithm, bad_encoding or no_match.
        """
        signature = request.header(SIGNATURE_HEADER)
        if signature is None or len(signature) > MAX_SIGNATURE_CHARS:
            raise SignatureError("missing_header")
        if get_signature_algorithm(request.header(SIGNATURE_SETTINGS_HEADER)) != HMAC_SHA1:
            raise SignatureError("unsupported_algorithm")
        url = self.url_of(request)
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("bad_encoding") from None
        params: Any
        if _body_hash(url) is not None:
            params = text  # the SDK checks bodySHA256 against it and signs the URL alone
        else:
            params = FormParams(parse_qsl(text, keep_blank_values=True))
        if not self._validator.validate(url, params, signature):
            raise SignatureError("no_match")
        return Verified(event_id=None)
