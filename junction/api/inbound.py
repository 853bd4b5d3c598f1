"""What every signed inbound route shares: the raw signed request and the store-down answer.

``/hooks/{source}`` and the provider callbacks (``/callbacks/sendgrid``, ``/callbacks/twilio``)
all verify a signature over the raw bytes before reading anything, and all answer 503 with
``Retry-After`` when the store fails, so the sender retries and nothing is lost.
"""

from __future__ import annotations

from fastapi import Request

from junction.api.problems import ApiProblem
from junction.api.verifiers.base import SignedRequest
from junction.core.errors import RetryableError

DEFAULT_RETRY_AFTER_S = 5


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers with lower-case names (the first of repeated names wins)."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        out.setdefault(name.lower(), value)
    return out


async def signed_request(request: Request) -> SignedRequest:
    """Read the raw body (the body limit was enforced in ASGI) into the verifier's input."""
    body = await request.body()
    return SignedRequest(request.method, str(request.url), request_headers(request), body)


def retry_after_s(exc: RetryableError, default_s: float = DEFAULT_RETRY_AFTER_S) -> int:
    """Whole seconds (at least 1, rounded up) to wait: the error's, else ``default_s``."""
    return max(1, int((exc.retry_after or default_s) + 0.999))


def store_unavailable(detail: str, retry_after: int) -> ApiProblem:
    """The 503 answered when what was sent could not be stored; ``detail`` says what."""
    return ApiProblem(
        503,
        "Service Unavailable",
        detail,
        code="unavailable",
        headers={"Retry-After": str(retry_after)},
    )
