"""Turn a SendGrid Mail Send answer (or the lack of one) into the error taxonomy.

| answer                          | result                                                  |
|---------------------------------|---------------------------------------------------------|
| 202                             | success: a Receipt, ``remote_id`` = X-Message-Id        |
| 401                             | AuthError: the API key is wrong or revoked              |
| 429                             | RateLimitedError (X-RateLimit-Reset, else Retry-After)  |
| 408, 5xx                        | UnavailableError                                        |
| 400, 403, 413, other 4xx        | FatalError, SendGrid's messages in ``details``          |
| other 2xx, 3xx                  | FatalError ``unexpected_status`` (is ``host`` SendGrid?) |
| no answer within ``timeout_s``  | RemoteTimeoutError                                      |
| refused, reset, DNS, cut off    | UnavailableError                                        |

User messages never hold the key, the addresses or the message; SendGrid's error messages go to
``details`` (internal), with email addresses masked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import orjson

from junction.core.errors import (
    AuthError,
    FatalError,
    JunctionError,
    RateLimitedError,
    UnavailableError,
)
from outbound.webhook.classify import MAX_RETRY_AFTER_S, parse_retry_after

ACCEPTED = 202
_EMAIL = re.compile(r"[^\s@\"'<>]{1,64}@[^\s@\"'<>]{1,255}")
_DETAIL_CHARS = 1024


def error_messages(body: bytes) -> str | None:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` as one line, addresses masked."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return None
    parts = []
    for err in errors:
        if not isinstance(err, dict):
            continue
        message = str(err.get("message") or "")
        where = err.get("field")
        parts.append(f"{where}: {message}" if where else message)
    text = _EMAIL.sub("<email>", "; ".join(parts))
    return text[:_DETAIL_CHARS] or None


def rate_limit_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait after a 429: X-RateLimit-Reset (epoch seconds) first, else Retry-After."""
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset.isdigit():
        delay = int(reset) - (time.time() if now is None else now)
        return min(max(delay, 0.0), MAX_RETRY_AFTER_S)
    return parse_retry_after(headers.get("Retry-After"), now)


def classify_status(
    status: int, headers: Mapping[str, str], body: bytes, *, duration_ms: float
) -> JunctionError | None:
    """Classify one complete answer; None means SendGrid accepted the message."""
    if status == ACCEPTED:
        return None
    ctx: dict[str, object] = {"status_code": status, "duration_ms": round(duration_ms, 3)}
    details = error_messages(body)
    if status == 401:
        return AuthError(
            "SendGrid refused the API key (401); check api_key and its Mail Send permission",
            details=details,
            context=ctx,
        )
    if status == 429:
        return RateLimitedError(
            "SendGrid answered 429 Too Many Requests; slow down",
            retry_after=rate_limit_delay(headers),
            details=details,
            context=ctx,
        )
    if status == 408 or status >= 500:
        return UnavailableError(
            f"SendGrid answered HTTP {status}; will retry",
            retry_after=parse_retry_after(headers.get("Retry-After")) if status == 503 else None,
            details=details,
            context=ctx,
        )
    if status == 403:
        return FatalError(
            "SendGrid refused the message (403): is the sender verified and may the key send?",
            details=details,
            context=ctx,
            code="forbidden",
        )
    if status == 413:
        return FatalError(
            "SendGrid refused the message as too large (413)",
            details=details,
            context=ctx,
            code="too_large",
        )
    if 400 <= status < 500:
        return FatalError(
            f"SendGrid rejected the message with HTTP {status}",
            details=details,
            context=ctx,
            code="rejected",
        )
    return FatalError(
        f"the mail API answered HTTP {status}, not 202: is 'host' SendGrid's API?",
        details=details,
        context=ctx,
        code="unexpected_status",
    )
