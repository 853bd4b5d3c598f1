"""The twilio SDK, and the translation of its failures into the error taxonomy.

The SDK is blocking (requests) and has no host option: ``RoutedHttpClient`` rewrites every URL
onto ``api_base`` when one is configured (a local fake, a gateway), keeps a per-request timeout,
and logs nothing (the SDK's own request logging would print URLs and headers).

Translation table:

| Twilio answer                               | error                                      |
|---------------------------------------------|--------------------------------------------|
| 2xx                                         | the message's sid                          |
| 21610 (recipient replied STOP)              | RecipientRejectedError(phone, reason=stop) |
| 21614 (not a mobile number)                 | RecipientRejectedError(phone, invalid)     |
| 21211 (invalid To)                          | RecordError                                |
| 401, 403, code 20003                        | AuthError                                  |
| 429, code 20429                             | RateLimitedError (Retry-After honoured)    |
| 408, 5xx, refused, reset, unreadable answer | UnavailableError                           |
| no answer within timeout_s                  | RemoteTimeoutError                         |
| other 4xx                                   | FatalError                                 |

Messages and contexts carry the HTTP status and Twilio's code, never Twilio's text (it repeats
the phone number) nor the number itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from junction.core.errors import (
    AuthError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RecipientRejectedError,
    RecordError,
    RemoteTimeoutError,
    UnavailableError,
)
from outbound.sms_twilio.config import TwilioSmsConfig

STOPPED = 21610  # the recipient replied STOP: Twilio refuses every send to them
NOT_MOBILE = 21614  # the number cannot receive SMS
INVALID_TO = 21211
AUTH_FAILED = 20003
TOO_MANY_REQUESTS = 20429


class RoutedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """A TwilioHttpClient that sends to ``base`` (when given), quietly, with a timeout."""

    def __init__(self, base: str | None, *, timeout: float, pool: int) -> None:
        """Route to ``base`` (scheme://host:port[/prefix]) or, with None, to Twilio itself."""
        super().__init__(timeout=timeout)
        self.base = base
        session: requests.Session = self.session
        if base is not None:
            # a local fake or gateway: no proxy or netrc from the environment may intercept it
            session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._local = threading.local()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Send one request (rewritten onto ``base``); remember the answer's Retry-After."""
        if self.base is not None:
            parts = urlsplit(url)
            url = self.base + urlunsplit(("", "", parts.path, parts.query, ""))
        self._local.retry_after = None
        response: Response = super().request(method, url, *args, **kwargs)
        headers = response.headers or {}
        self._local.retry_after = headers.get("Retry-After") or headers.get("retry-after")
        return response

    def last_retry_after(self) -> float | None:
        """Retry-After of this thread's last answer, in seconds (None when absent or a date)."""
        value = getattr(self._local, "retry_after", None)
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None

    def log_request(self, kwargs: dict[str, Any]) -> None:
        """Log nothing: the SDK would log URLs and headers."""

    def log_response(self, status_code: int, response: Any) -> None:
        """Log nothing."""

    def close(self) -> None:
        """Close the connection pool."""
        if self.session is not None:
            self.session.close()


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What Twilio answered for one accepted message."""

    sid: str
    status: str | None


class TwilioSender:
    """Sends single SMS with the twilio SDK (blocking: call it from a worker thread)."""

    def __init__(self, config: TwilioSmsConfig) -> None:
        """Build the SDK client for ``config``'s account, routed to ``api_base`` when set."""
        self.config = config
        self._http = RoutedHttpClient(
            config.api_base_url(), timeout=config.timeout_s, pool=config.max_concurrency
        )
        self._client = Client(
            config.account_sid,
            config.auth_token.get_secret_value(),
            http_client=self._http,
        )

    def send(self, *, to: str, body: str, status_callback: str | None) -> SentMessage:
        """Create one message; raise a classified JunctionError when Twilio does not accept it.

        Args:
            to: The recipient, E.164.
            body: The text.
            status_callback: Where Twilio reports the message's status (None: nowhere).

        Returns:
            The message's sid and first status.
        """
        options: dict[str, Any] = {"to": to, "body": body}
        if self.config.from_ is not None:
            options["from_"] = self.config.from_
        if self.config.messaging_service_sid is not None:
            options["messaging_service_sid"] = self.config.messaging_service_sid
        if status_callback is not None:
            options["status_callback"] = status_callback
        try:
            message = self._client.messages.create(**options)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify_rest(
                int(exc.status), exc.code, to=to, retry_after=self._http.last_retry_after()
            ) from None
        except requests.Timeout:
            raise RemoteTimeoutError(
                f"Twilio did not answer within {self.config.timeout_s:g} s"
            ) from None
        except requests.RequestException as exc:
            raise UnavailableError(
                "Twilio could not be reached", details=type(exc).__name__
            ) from None
        except ValueError:
            # a 2xx whose body is not JSON: whether the message was queued is unknown
            raise UnavailableError("Twilio's answer could not be read") from None
        except TwilioException as exc:
            raise FatalError(
                "the twilio SDK refused the request", details=type(exc).__name__
            ) from None
        sid = getattr(message, "sid", None)
        if not isinstance(sid, str) or not sid:
            raise UnavailableError("Twilio accepted the message but named no sid")
        status = getattr(message, "status", None)
        return SentMessage(sid, None if status is None else str(status))

    def close(self) -> None:
        """Release the connection pool; safe to call twice."""
        self._http.close()


def classify_rest(
    status: int, code: int | None, *, to: str, retry_after: float | None = None
) -> JunctionError:
    """The error for a Twilio error answer (see the module's table).

    Args:
        status: The HTTP status.
        code: Twilio's error code, when the body had one.
        to: The recipient (kept only as an attribute of RecipientRejectedError).
        retry_after: Seconds from the answer's Retry-After header.

    Returns:
        The classified error (not raised).
    """
    ctx: dict[str, Any] = {"status_code": status, "twilio_code": code}
    where = f"({status}, code {code})" if code is not None else f"({status})"
    if code == STOPPED:
        return RecipientRejectedError(
            f"Twilio refuses the recipient: they replied STOP {where}",
            kind="phone",
            address=to,
            reason="stop",
            context=ctx,
        )
    if code == NOT_MOBILE:
        return RecipientRejectedError(
            f"Twilio refuses the recipient: not a mobile number {where}",
            kind="phone",
            address=to,
            reason="invalid",
            context=ctx,
        )
    if code == INVALID_TO:
        return RecordError(
            f"Twilio refuses the recipient number as invalid {where}",
            context=ctx,
            code="invalid_phone",
        )
    if status in (401, 403) or code == AUTH_FAILED:
        return AuthError(f"Twilio rejected the credentials {where}", context=ctx)
    if status == 429 or code == TOO_MANY_REQUESTS:
        return RateLimitedError(
            f"Twilio asked us to slow down {where}", retry_after=retry_after, context=ctx
        )
    if status == 408 or status >= 500:
        return UnavailableError(
            f"Twilio is unavailable {where}", retry_after=retry_after, context=ctx
        )
    return FatalError(f"Twilio rejected the message {where}", context=ctx)
