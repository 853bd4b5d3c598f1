"""The sendgrid SDK, used here only: build the Mail body, POST it, translate what comes back.

The SDK sends with urllib (python-http-client) and blocks, so ``SendGridClient.send`` runs in a
worker thread (the channel bounds how many at once).  ``timeout`` is urllib's per-operation
socket timeout; the channel adds the total bound.  python-http-client logs the request headers
(the ``Authorization: Bearer`` key) and the body (addresses) at DEBUG: its DEBUG records are
dropped by a filter on its logger, so turning on debug logging cannot leak them.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError as SdkHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    PlainTextContent,
    ReplyTo,
    Subject,
    To,
)
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from junction.core.errors import (
    InternalError,
    JunctionError,
    RecordError,
    RemoteTimeoutError,
    UnavailableError,
)
from outbound.email_sendgrid.classify import classify_status
from outbound.email_sendgrid.message import EmailMessage

SDK_LOGGER = "python_http_client.client"


class _NoDebug(logging.Filter):
    """Drops the SDK's DEBUG records: they carry the API key and the message body."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _silence_sdk_debug() -> None:
    logger = logging.getLogger(SDK_LOGGER)
    if not any(isinstance(f, _NoDebug) for f in logger.filters):
        logger.addFilter(_NoDebug())


@dataclass(frozen=True)
class Sent:
    """SendGrid accepted a message."""

    status_code: int
    message_id: str | None
    duration_ms: float


def to_mail(message: EmailMessage) -> dict[str, Any]:
    """The v3 Mail Send body of ``message``, built with the SDK's Mail helper.

    Raises:
        RecordError: The rendered content starts like a SendGrid API key (the SDK refuses it).
    """
    try:
        mail = Mail(
            from_email=From(message.from_email, message.from_name),
            to_emails=[To(address) for address in message.to],
            subject=Subject(message.subject),
            plain_text_content=PlainTextContent(message.text),
            html_content=HtmlContent(message.html) if message.html else None,
            is_multiple=True,  # one personalization per recipient
        )
    except ApiKeyIncludedException:
        raise RecordError(
            "the rendered email looks like it contains a SendGrid API key; not sent",
            code="api_key_in_content",
        ) from None
    if message.reply_to:
        mail.reply_to = ReplyTo(message.reply_to)
    if message.categories:
        mail.category = [Category(c) for c in message.categories]
    # only real CustomArg objects: assigning None crashes the helper
    mail.custom_arg = [CustomArg(k, v) for k, v in message.custom_args.items()]
    for name, value in message.headers.items():
        mail.header = Header(name, value)
    body: dict[str, Any] = mail.get()
    return body


class SendGridClient:
    """One SDK client (one API key and host), shared by the channel's worker threads."""

    def __init__(self, api_key: str, host: str, *, timeout_s: float) -> None:
        """Build the SDK client; ``host`` without a trailing slash."""
        if not api_key:
            # the SDK would fall back to $SENDGRID_API_KEY: never send with a key nobody configured
            raise InternalError("the SendGrid client needs an API key")
        _silence_sdk_debug()
        self._sdk = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SendGridClient(host={self._sdk.host!r})"

    def send(self, message: EmailMessage) -> Sent:
        """POST one message (blocking) and classify the answer.

        Raises:
            RecordError: The message cannot be built (see ``to_mail``).
            AuthError | FatalError | RateLimitedError | UnavailableError | RemoteTimeoutError:
                see ``outbound.email_sendgrid.classify``.
        """
        body = to_mail(message)
        started = time.perf_counter()
        try:
            response = self._sdk.client.mail.send.post(request_body=body, timeout=self.timeout_s)
        except SdkHTTPError as exc:
            raise self._http_error(exc, started) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _transport_error(exc, _elapsed(started)) from None
        duration_ms = _elapsed(started)
        headers = response.headers
        error = classify_status(
            response.status_code, headers, response.body or b"", duration_ms=duration_ms
        )
        if error is not None:
            raise error
        return Sent(response.status_code, headers.get("X-Message-Id"), duration_ms)

    def _http_error(self, exc: SdkHTTPError, started: float) -> JunctionError:
        body = exc.body if isinstance(exc.body, bytes) else b""
        headers = exc.headers if exc.headers is not None else {}
        error = classify_status(int(exc.status_code), headers, body, duration_ms=_elapsed(started))
        assert error is not None  # the SDK raises only for statuses >= 400
        return error


def _elapsed(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _transport_error(exc: BaseException, duration_ms: float) -> JunctionError:
    """Classify a failure with no complete answer (the exception's text may hold the URL)."""
    ctx: dict[str, object] = {"duration_ms": round(duration_ms, 3)}
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return RemoteTimeoutError(
            "SendGrid did not answer within the timeout",
            details=type(reason).__name__,
            context=ctx,
        )
    return UnavailableError(
        "could not reach SendGrid; will retry",
        details=type(reason).__name__,
        context=ctx,
    )
