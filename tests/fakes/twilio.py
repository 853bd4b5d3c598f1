"""A local Twilio Messaging API speaking the real wire format, for the real twilio SDK.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with an urlencoded body (``To``,
``From`` or ``MessagingServiceSid``, ``Body``, ``StatusCallback``) and Basic auth
(``AccountSid:AuthToken``) answers 201 with Twilio's message JSON, or Twilio's error JSON
(``{"code", "message", "more_info", "status"}``): 20003 for bad credentials, 21211 for a ``To``
that is not E.164, 21610 for a number on ``stopped`` (it replied STOP), 21614 for a number on
``landlines``, 21602/21603 for a missing body or sender.

Faults: ``fail_next(kind, n)`` with ``client_error`` (400, code 21408), ``server_error`` (500,
code 20500), ``rate_limit`` (429, code 20429, Retry-After) or ``hang`` (the answer waits
``hang_s`` and then is a 504 that stored nothing).

Callbacks: ``status_params`` / ``inbound_params`` build the form Twilio posts, and
``post_signed`` sends it to the hub signed as Twilio does (``X-Twilio-Signature`` computed by the
SDK's ``RequestValidator.compute_signature`` on the public URL).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from twilio.request_validator import RequestValidator

from tests.fakes.server import Faults

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tw-test-token-0123456789abcdef"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
API_VERSION = "2010-04-01"


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Any:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class TwilioFake:
    """The fake's state: credentials, refusal lists, received messages and faults."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    stopped: set[str] = field(default_factory=set)
    landlines: set[str] = field(default_factory=set)
    hang_s: float = 3.0
    faults: Faults = field(default_factory=lambda: Faults(retry_after_s=7.0))
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    _client_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, kind: str, n: int = 1) -> None:
        """Fail the next ``n`` sends with ``client_error``, ``server_error``, ``rate_limit`` or
        ``hang``; ``n = 0`` clears that kind."""
        if kind == "client_error":
            with self._lock:
                self._client_errors = max(0, n)
            return
        self.faults.fail_next("timeout" if kind == "hang" else kind, n)

    def seen_ids(self) -> list[str]:
        """The delivery ids read off the StatusCallback URLs, in the order received."""
        return [m["delivery_id"] for m in self.messages if m.get("delivery_id")]

    def message(self, sid: str) -> dict[str, Any]:
        """The stored message ``sid``."""
        return next(m for m in self.messages if m["sid"] == sid)

    def _authorized(self, request: Request, account: str) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and account == self.account_sid
        )

    def _take_client_error(self) -> bool:
        with self._lock:
            if self._client_errors > 0:
                self._client_errors -= 1
                return True
        return False

    def app(self) -> FastAPI:
        """The FastAPI app to serve (``tests.fakes.server.serve_app``)."""
        app = FastAPI()

        @app.post("/2010-04-01/Accounts/{account}/Messages.json")
        async def create_message(account: str, request: Request) -> Any:
            with self._lock:
                self.requests += 1
            fault = self.faults.take(request.url.path)
            if fault == "timeout":
                await asyncio.sleep(self.hang_s)
                return _error(504, 20504, "Gateway timeout")
            if fault == "rate_limit":
                return _error(
                    429,
                    20429,
                    "Too Many Requests",
                    {"Retry-After": f"{self.faults.retry_after_s:g}"},
                )
            if fault == "server_error":
                return _error(500, 20500, "Internal Server Error")
            if fault == "expired_session" or not self._authorized(request, account):
                return _error(401, 20003, "Authenticate")
            if self._take_client_error():
                return _error(
                    400, 21408, "Permission to send an SMS has not been enabled for the region"
                )
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            to = form.get("To", "")
            if not E164.match(to):
                return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            if not form.get("From") and not form.get("MessagingServiceSid"):
                return _error(400, 21603, "The 'From' phone number is required.")
            if not form.get("Body"):
                return _error(400, 21602, "Message body is required.")
            if to in self.stopped:
                return _error(400, 21610, "Attempt to send to unsubscribed recipient")
            if to in self.landlines:
                return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
            return JSONResponse(self._store(account, form), status_code=201)

        return app

    def _store(self, account: str, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        callback = form.get("StatusCallback")
        delivery_id = None
        if callback:
            delivery_id = (parse_qs(urlsplit(callback).query).get("delivery_id") or [None])[0]
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
        answer = {
            "account_sid": account,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form["To"],
            "uri": uri,
        }
        with self._lock:
            self.messages.append(
                {**answer, "status_callback": callback, "delivery_id": delivery_id}
            )
        return answer


def status_params(
    message: dict[str, Any], status: str, *, error_code: int | None = None
) -> dict[str, str]:
    """The form Twilio posts to a message's StatusCallback when its status changes."""
    params = {
        "AccountSid": message["account_sid"],
        "ApiVersion": API_VERSION,
        "From": message.get("from") or "+15005550006",
        "MessageSid": message["sid"],
        "MessageStatus": status,
        "SmsSid": message["sid"],
        "SmsStatus": status,
        "To": message["to"],
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


def inbound_params(from_: str, to: str, body: str, *, sid: str | None = None) -> dict[str, str]:
    """The form Twilio posts to a number's messaging webhook when someone texts it."""
    sid = sid or "SM" + secrets.token_hex(16)
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": API_VERSION,
        "Body": body,
        "From": from_,
        "FromCountry": "US",
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": to,
    }


def signature(token: str, url: str, params: dict[str, str] | None) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` to ``url``, as Twilio computes it."""
    return str(RequestValidator(token).compute_signature(url, params or {}))


def post_signed(
    base_url: str,
    public_url: str,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``params`` as Twilio would to ``public_url``, delivered to the hub at ``base_url``.

    Args:
        base_url: Where the hub really listens (http://127.0.0.1:port).
        public_url: The URL Twilio calls (the path and query are kept, the host is replaced).
        params: The form.
        token: The auth token that signs.
        signed_url: Sign this URL instead of ``public_url`` (e.g. with ``:443`` added).
        headers: Extra headers (replace the signature with ``{"X-Twilio-Signature": ...}``).
    """
    parts = urlsplit(public_url)
    target = base_url + parts.path + (f"?{parts.query}" if parts.query else "")
    sent = {"X-Twilio-Signature": signature(token, signed_url or public_url, params)}
    sent.update(headers or {})
    with httpx.Client(timeout=30, trust_env=False) as http:
        return http.post(target, data=params, headers=sent)
