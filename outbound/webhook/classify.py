"""Turn a webhook receiver's answer (or the lack of one) into the error taxonomy.

The table follows Standard Webhooks and Svix (RELIABILITY.md C8, tests 5-7):

| answer                                   | result                                    |
|------------------------------------------|-------------------------------------------|
| 2xx                                      | success (a Receipt)                       |
| header ``webhook-delivery: abort-message`` | FatalError: stop retrying this message  |
| 410                                      | EndpointGoneError: disable the endpoint   |
| 429                                      | RateLimitedError, honouring Retry-After   |
| 408, 5xx                                 | UnavailableError (503 honours Retry-After) |
| 3xx                                      | RetryableError: redirects are never followed |
| other 4xx                                | FatalError                                |
| timeout                                  | RemoteTimeoutError                        |
| refused, reset, DNS, truncated answer    | UnavailableError                          |

A 2xx that also carries ``abort-message`` is still a success: the receiver has the message, and
"abort" only means "do not retry", which a success never does.  Messages never hold the payload, the
URL or the secret; the receiver's answer goes to ``details`` (internal) only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import aiohttp

from junction.core.errors import (
    EndpointGoneError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)

ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"
# a Retry-After beyond a week is almost surely a bug on the receiver's side; clamp it
MAX_RETRY_AFTER_S = 7 * 86400.0
_DETAIL_CHARS = 256


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header (delay-seconds or HTTP-date) into seconds from now.

    Args:
        value: The header value, or None when absent.
        now: The current Unix time (defaults to ``time.time()``); used for HTTP-dates.

    Returns:
        A delay in seconds, clamped to ``[0, 7 days]``, or None when absent or unparseable.
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 HTTP-dates are always GMT
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def classify_response(
    status: int,
    headers: Mapping[str, str],
    *,
    duration_ms: float,
    body_excerpt: str = "",
) -> JunctionError | None:
    """Classify a complete HTTP answer.

    Args:
        status: The HTTP status code.
        headers: Response headers (a case-insensitive mapping, as aiohttp gives).
        duration_ms: How long the attempt took.
        body_excerpt: The start of the answer's body, kept in ``details`` for operators.

    Returns:
        None for a success, else the error to raise.
    """
    if 200 <= status < 300:
        return None
    ctx: dict[str, object] = {"status_code": status, "duration_ms": round(duration_ms, 3)}
    details = f"response body starts: {body_excerpt[:_DETAIL_CHARS]!r}" if body_excerpt else None
    if headers.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE:
        return FatalError(
            f"webhook receiver answered HTTP {status} and asked not to retry (abort-message)",
            details=details,
            context=ctx,
            code="abort_message",
        )
    if status == 410:
        return EndpointGoneError(
            "webhook receiver answered 410 Gone; disable this endpoint",
            details=details,
            context=ctx,
        )
    if status == 429:
        return RateLimitedError(
            "webhook receiver answered 429 Too Many Requests; slow down",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            details=details,
            context=ctx,
        )
    if status == 408 or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After")) if status == 503 else None
        return UnavailableError(
            f"webhook receiver answered HTTP {status}; will retry",
            retry_after=retry_after,
            details=details,
            context=ctx,
        )
    if 300 <= status < 400:
        return RetryableError(
            f"webhook receiver answered a redirect (HTTP {status}); redirects are never "
            "followed, so update the endpoint URL",
            details=details,
            context=ctx,
            code="redirect_not_followed",
        )
    if status in (401, 403):
        return FatalError(
            f"webhook receiver answered HTTP {status}: it rejected the signature or "
            "credentials (check the secret and headers)",
            details=details,
            context=ctx,
            code="rejected_auth",
        )
    if 400 <= status < 500:
        return FatalError(
            f"webhook receiver rejected the delivery with HTTP {status}",
            details=details,
            context=ctx,
        )
    # 1xx as a final answer is a protocol violation; retrying is the safe reading
    return UnavailableError(
        f"webhook receiver answered an unexpected HTTP {status}",
        details=details,
        context=ctx,
    )


def classify_exception(exc: BaseException, *, duration_ms: float) -> JunctionError:
    """Classify a transport failure (no complete answer was received).

    Args:
        exc: The exception raised by aiohttp or asyncio.
        duration_ms: How long the attempt took.

    Returns:
        A RemoteTimeoutError for timeouts and an UnavailableError for everything else.
    """
    ctx: dict[str, object] = {"duration_ms": round(duration_ms, 3)}
    # internal detail: the exception class only; aiohttp messages can carry the URL
    details = type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return RemoteTimeoutError(
            "webhook receiver did not answer within the timeout", details=details, context=ctx
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = "dns"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = "connect"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        reason = "truncated_response"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "disconnected"
    else:
        reason = "transport"
    ctx["reason"] = reason
    messages = {
        "dns": "webhook receiver host name did not resolve",
        "connect": "could not connect to the webhook receiver",
        "truncated_response": "webhook receiver's answer was cut off",
        "disconnected": "webhook receiver closed the connection without answering",
        "transport": "webhook request failed at the transport level",
    }
    return UnavailableError(messages[reason] + "; will retry", details=details, context=ctx)
