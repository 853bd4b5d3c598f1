"""Turn Slack's answers into the error taxonomy.

Incoming webhooks answer with an HTTP status and a short text body:

| answer                                        | result                                       |
|-----------------------------------------------|----------------------------------------------|
| 2xx (``ok``)                                  | success                                      |
| 404 ``no_service`` / ``team_disabled``        | EndpointGoneError: the webhook was removed   |
| 410 ``channel_is_archived``                   | EndpointGoneError                            |
| 403 ``invalid_token``                         | AuthError                                    |
| other 4xx: ``invalid_payload``, ``no_text``,  | FatalError                                   |
| 403 ``action_prohibited``, 404 ``channel_not_found`` |                                       |
| 429, 408, 5xx, 3xx, transport failures        | as ``outbound.webhook.classify``             |

``chat.postMessage`` answers HTTP 200 with ``{"ok": false, "error": ...}``:

| error                                                           | result                  |
|-----------------------------------------------------------------|-------------------------|
| ``ratelimited`` (or HTTP 429)                                   | RateLimitedError        |
| ``invalid_auth``, ``not_authed``, ``token_revoked``,            | AuthError               |
| ``token_expired``, ``account_inactive``, ``missing_scope``      |                         |
| ``internal_error``, ``fatal_error``, ``service_unavailable``,   | UnavailableError        |
| ``request_timeout`` (or HTTP 5xx)                               |                         |
| anything else: ``channel_not_found``, ``not_in_channel``,       | FatalError              |
| ``is_archived``, ``msg_too_long``, ...                          |                         |

Slack's error codes are short snake_case words (never message content), so they go in the message
and the ``code``; anything else in a body goes to ``details`` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from junction.core.errors import (
    AuthError,
    EndpointGoneError,
    FatalError,
    JunctionError,
    RateLimitedError,
    UnavailableError,
)
from outbound.webhook.classify import classify_response, parse_retry_after

_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DETAIL_CHARS = 256

AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "invalid_token",
    }
)
UNAVAILABLE_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "rollup_error"}
)
RATE_LIMIT_ERRORS = frozenset({"ratelimited", "rate_limited"})
GONE_WEBHOOK_ERRORS = frozenset({"no_service", "team_disabled", "channel_is_archived"})


def slack_code(text: str) -> str | None:
    """Return ``text`` as a Slack error code if it looks like one (``channel_not_found``)."""
    text = text.strip()
    return text if _CODE.fullmatch(text) else None


def _ctx(status: int, duration_ms: float, code: str | None) -> dict[str, object]:
    ctx: dict[str, object] = {"status_code": status, "duration_ms": round(duration_ms, 3)}
    if code is not None:
        ctx["slack_error"] = code
    return ctx


def classify_webhook_answer(
    status: int, headers: Mapping[str, str], body: str, *, duration_ms: float
) -> JunctionError | None:
    """Classify an incoming webhook's answer.

    Args:
        status: HTTP status.
        headers: Response headers (case-insensitive, as aiohttp gives).
        body: The start of the answer's text.
        duration_ms: How long the attempt took.

    Returns:
        None for a success, else the error to raise.
    """
    if 200 <= status < 300:
        return None
    code = slack_code(body)
    details = f"response body starts: {body[:_DETAIL_CHARS]!r}" if body else None
    ctx = _ctx(status, duration_ms, code)
    if status == 410 or (status == 404 and code in GONE_WEBHOOK_ERRORS):
        return EndpointGoneError(
            f"Slack incoming webhook is gone ({code or status}): the webhook was removed or its "
            "channel archived; disable this endpoint and configure a new webhook",
            details=details,
            context=ctx,
        )
    if status == 403 and code in AUTH_ERRORS:
        return AuthError(
            f"Slack refused the incoming webhook's credentials ({code})",
            details=details,
            context=ctx,
        )
    if 400 <= status < 500 and status not in (408, 429):
        return FatalError(
            f"Slack rejected the message with HTTP {status} ({code or 'no error code'})",
            details=details,
            context=ctx,
            code=f"slack_{code}" if code else None,
        )
    return classify_response(status, headers, duration_ms=duration_ms, body_excerpt=body)


def classify_api_error(
    code_text: str, status: int, headers: Mapping[str, str], *, duration_ms: float
) -> JunctionError:
    """Classify a Web API ``{"ok": false, "error": code}`` answer.

    Args:
        code_text: The ``error`` field.
        status: HTTP status (200 for most Slack errors).
        headers: Response headers (Retry-After on rate limits).
        duration_ms: How long the attempt took.

    Returns:
        The error to raise.
    """
    code = slack_code(code_text)
    ctx = _ctx(status, duration_ms, code)
    shown = code or "an unreadable error code"
    if code in RATE_LIMIT_ERRORS or status == 429:
        return RateLimitedError(
            f"Slack rate-limited chat.postMessage ({shown}); slow down",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            context=ctx,
        )
    if code in AUTH_ERRORS:
        return AuthError(
            f"Slack refused the bot token ({shown}): check bot_token and its chat:write scope",
            context=ctx,
        )
    if code in UNAVAILABLE_ERRORS or status >= 500:
        return UnavailableError(
            f"Slack could not post the message right now ({shown}); will retry",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            context=ctx,
        )
    return FatalError(
        f"Slack rejected the message ({shown})",
        context=ctx,
        code=f"slack_{code}" if code else None,
    )
