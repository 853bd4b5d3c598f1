"""A local SendGrid v3 Mail Send API for the real sendgrid SDK (``SendGridAPIClient(host=...)``).

``POST /v3/mail/send`` checks ``Authorization: Bearer <key>``, validates the JSON body the way
SendGrid does (personalizations with ``to``, ``from``, a subject, content with text/plain first,
at most 10 categories, string custom args and headers, no reserved headers) and answers 202 with
an empty body and an ``X-Message-Id`` header.  Errors use SendGrid's shape,
``{"errors": [{"message", "field", "help"}]}``.

``Faults`` (``tests.fakes.server``) is consulted after authentication: ``client_error`` → 400,
``server_error`` → 500, ``rate_limit`` → 429 with X-RateLimit-Reset and Retry-After,
``expired_session`` → 401, ``timeout`` (the contract's ``hang``) → no answer until ``release()`` or
``faults.delay_s``.  Every authenticated request is kept in ``received`` (body and headers), faults
included, so a test sees exactly what reached the wire.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from tests.fakes.server import Faults, serve_app

API_KEY = "SG.fake-key-7Qm2.Zx91kLp0aa3d"
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
MAX_BYTES = 30 * 1024 * 1024
# headers SendGrid refuses in "headers" (its Mail Send docs)
RESERVED = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
_EMAIL = re.compile(r"^[^@\s\"<>,;]+@[^@\s\"<>,;]+\.[A-Za-z]{2,}$")


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it."""

    headers: dict[str, str]
    body: Any  # the parsed JSON (None when it was not JSON)
    status: int
    message_id: str | None

    @property
    def delivery_id(self) -> str | None:
        """The ``delivery_id`` custom arg, as SendGrid would echo it in events."""
        args = self.body.get("custom_args") if isinstance(self.body, dict) else None
        value = args.get("delivery_id") if isinstance(args, dict) else None
        return value if isinstance(value, str) else None


class MailSendError(Exception):
    """One validation problem, answered 400 (or ``status``)."""

    def __init__(self, message: str, field: str | None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def error_body(*errors: tuple[str, str | None]) -> bytes:
    """SendGrid's error JSON."""
    return orjson.dumps(
        {"errors": [{"message": m, "field": f, "help": HELP if f else None} for m, f in errors]}
    )


def _email(value: Any, field: str, what: str = "Does not contain a valid address.") -> None:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        raise MailSendError(what, field)
    if not _EMAIL.match(value["email"]):
        raise MailSendError(what, f"{field}.email")


def validate(body: Any) -> None:
    """Raise MailSendError for the first problem SendGrid would report."""
    if not isinstance(body, dict):
        raise MailSendError("Bad Request", None)
    people = body.get("personalizations")
    if not isinstance(people, list) or not people or len(people) > 1000:
        raise MailSendError(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    for i, p in enumerate(people):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            raise MailSendError(
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"personalizations.{i}.to",
            )
        for j, person in enumerate(to):
            _email(person, f"personalizations.{i}.to.{j}")
    _email(body.get("from"), "from", "The from email does not contain a valid address.")
    if "reply_to" in body:
        _email(body["reply_to"], "reply_to", "The reply_to email does not contain a valid address.")
    subject = body.get("subject")
    if not (isinstance(subject, str) and subject) and not all(
        isinstance(p.get("subject"), str) and p["subject"] for p in people
    ):
        raise MailSendError(
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject defined.",
            "subject",
        )
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise MailSendError(
            "Unless a valid template_id is provided, the content parameter is required.",
            "content",
        )
    for k, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("value"), str):
            raise MailSendError("The content value must be a string.", f"content.{k}.value")
        if not block["value"]:
            raise MailSendError(
                "The content value must be a string at least one character in length.",
                f"content.{k}.value",
            )
        if block.get("type") == "text/plain" and k != 0:
            raise MailSendError(
                "If present, text/plain content must be first, followed by text/html, "
                "followed by any other content.",
                f"content.{k}.type",
            )
    categories = body.get("categories", [])
    if len(categories) > 10:
        raise MailSendError(
            "Too many categories on this request. Categories are limited to 10 per request.",
            "categories",
        )
    if len(set(categories)) != len(categories) or not all(
        isinstance(c, str) and 0 < len(c) <= 255 for c in categories
    ):
        raise MailSendError("The categories must be unique strings.", "categories")
    for name, value in (body.get("custom_args") or {}).items():
        if not isinstance(value, str):
            raise MailSendError("Custom args values must be strings.", f"custom_args.{name}")
    for name, value in (body.get("headers") or {}).items():
        if name.lower() in RESERVED:
            raise MailSendError(f"The {name} header is reserved.", f"headers.{name}")
        if not isinstance(value, str):
            raise MailSendError("Header values must be strings.", f"headers.{name}")


class SendGridFake:
    """The fake API: an app, its faults and what it received."""

    def __init__(self, api_key: str = API_KEY, *, hang_s: float = 20.0) -> None:
        self.api_key = api_key
        self.faults = Faults(delay_s=hang_s)
        self.received: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route("/v3/mail/send", self.mail_send, methods=["POST"])
        self.base = ""  # the served URL, once served_fake runs it

    def release(self) -> None:
        """End every hung request now (call before stopping the server)."""
        self.released.set()

    def accepted(self) -> list[Received]:
        """The requests answered 202."""
        with self._lock:
            return [r for r in self.received if r.status == 202]

    def seen_ids(self) -> list[str]:
        """``custom_args.delivery_id`` of every authenticated request, faults included."""
        with self._lock:
            return [r.delivery_id for r in self.received if r.delivery_id is not None]

    def _keep(self, request: Request, body: Any, status: int, message_id: str | None) -> None:
        with self._lock:
            self.received.append(Received(dict(request.headers), body, status, message_id))

    async def _hang(self) -> None:
        waited = 0.0
        while not self.released.is_set() and waited < self.faults.delay_s:
            await asyncio.sleep(0.05)
            waited += 0.05

    async def mail_send(self, request: Request) -> Response:
        """``POST /v3/mail/send``."""
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _json(
                401,
                error_body(
                    ("The provided authorization grant is invalid, expired, or revoked", None)
                ),
            )
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        fault = self.faults.take(request.url.path)
        status, answer = self._answer(fault, raw, body)
        message_id = answer.headers.get("x-message-id") if status == 202 else None
        self._keep(request, body, status, message_id)
        if fault == "timeout":
            await self._hang()
        return answer

    def _answer(self, fault: str | None, raw: bytes, body: Any) -> tuple[int, Response]:
        if fault == "client_error":
            return 400, _json(
                400,
                error_body(("The from address does not match a verified Sender Identity.", "from")),
            )
        if fault == "server_error":
            return 500, _json(500, error_body(("Internal server error", None)))
        if fault == "rate_limit":
            reset = int(time.time() + self.faults.retry_after_s)
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            }
            return 429, _json(429, error_body(("too many requests", None)), headers)
        if fault == "expired_session":
            return 401, _json(401, error_body(("authorization required", None)))
        if len(raw) > MAX_BYTES:
            return 413, _json(413, error_body(("The JSON payload is too large.", None)))
        if body is None:
            return 400, _json(400, error_body(("Bad Request", None)))
        try:
            validate(body)
        except MailSendError as exc:
            return exc.status, _json(exc.status, error_body((exc.message, exc.field)))
        message_id = secrets.token_urlsafe(16)[:22]
        return 202, Response(status_code=202, headers={"X-Message-Id": message_id})


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@contextmanager
def served_fake(*, hang_s: float = 20.0) -> Iterator[SendGridFake]:
    """A SendGrid fake served on 127.0.0.1 (its URL in ``base``); hung requests end on exit."""
    fake = SendGridFake(hang_s=hang_s)
    with serve_app(fake.app) as base:
        fake.base = base
        try:
            yield fake
        finally:
            fake.release()
