"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

Errors answer with a short, safe ``detail`` (a JunctionError's ``user_message``); internal details
go to the log only, never to the client.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    JunctionError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from junction.core.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    """An HTTP error with a problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code or title.lower().replace(" ", "_")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": f"https://junction.dev/problems/{code or 'error'}",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if code:
        body["code"] = code
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def status_of(exc: JunctionError) -> int:
    """The HTTP status that says how a client should react to ``exc``."""
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, RateLimitedError):
        return 429
    if isinstance(exc, RetryableError):
        return 503
    if isinstance(exc, RecordError):
        return 422
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, FatalError):
        return 502
    return 500


# a body that is not JSON at all is malformed syntax (RFC 9110 §15.5.1: 400); JSON of the wrong
# shape or values is well-formed but unprocessable (422)
MALFORMED_JSON = "invalid_json"


def malformed_json(errors: list[dict[str, Any]] | None = None) -> ApiProblem:
    """400: the body is not JSON at all (every route's answer, parsed by FastAPI or by itself)."""
    return ApiProblem(
        400,
        "Malformed JSON",
        "the body is not valid JSON",
        code=MALFORMED_JSON,
        extra={"errors": errors or [{"loc": ["body"], "type": "json_invalid"}]},
    )


def unreadable_status(code: str | None) -> int:
    """The status of a body that could not be read: 400 when it is not JSON, else 422."""
    return 400 if code == MALFORMED_JSON else 422


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


# AuthError codes that mean "a bearer token was presented and refused" (RFC 6750 §3.1)
_TOKEN_REFUSED = frozenset({"invalid_token", "token_expired"})


def bearer_challenge(code: str | None) -> str:
    """The ``WWW-Authenticate`` value of a 401: ``error="invalid_token"`` when a presented bearer
    token was refused (expired, forged, of another type); a bare ``Bearer`` when none was
    presented (RFC 6750 §3.1: then no error code)."""
    return 'Bearer error="invalid_token"' if code in _TOKEN_REFUSED else "Bearer"


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def answer(exc: ApiProblem, request_id: str | None) -> Response:
    """The problem+json response of ``exc`` (routes raise it; middleware answers it)."""
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        code=exc.code,
        headers=exc.headers,
        extra=exc.extra,
        request_id=request_id,
    )


def _answer(request: Request, exc: ApiProblem) -> Response:
    return answer(exc, _request_id(request))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, as problem+json."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> Response:
        return _answer(request, exc)

    @app.exception_handler(JunctionError)
    async def _junction_error(request: Request, exc: JunctionError) -> Response:
        status = status_of(exc)
        headers: dict[str, str] = {}
        retry_after = getattr(exc, "retry_after", None)
        if status in (429, 503) and retry_after:
            headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        if status == 401:
            headers["WWW-Authenticate"] = bearer_challenge(exc.code)
        if status >= 500:
            log.error("request failed", error=type(exc).__name__, code=exc.code)
        return problem_response(
            status,
            type(exc).__name__,
            exc.user_message,
            code=exc.code,
            headers=headers,
            request_id=_request_id(request),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # locations and reasons only: pydantic's messages can echo input values (personal data)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type", "invalid")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return _answer(request, malformed_json(errors))
        content_type = request.headers.get("content-type", "")
        unparsed = [e for e in errors if e["loc"] == ["body"] and e["type"] != "missing"]
        if unparsed and not _is_json(content_type):
            # a JSON route given a body of another (or no) media type: FastAPI left it unparsed
            return problem_response(
                415,
                "Unsupported media type",
                "send the body as application/json",
                code="unsupported_media_type",
                request_id=_request_id(request),
            )
        return problem_response(
            422,
            "Invalid request",
            "the request does not match the schema",
            code="invalid_request",
            extra={"errors": errors},
            request_id=_request_id(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.detail else "HTTP error",
            code=f"http_{exc.status_code}",
            headers=dict(exc.headers or {}),
            request_id=_request_id(request),
        )

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError) -> Response:
        # the database refused a value the schema let through (e.g. a NUL byte on PostgreSQL)
        log.info("value refused by the store", error=type(exc.orig).__name__)
        return problem_response(
            400,
            "Invalid value",
            "a value in the request cannot be stored or searched",
            code="invalid_value",
            request_id=_request_id(request),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", error=type(exc).__name__)
        return problem_response(
            500,
            "Internal error",
            "the server failed; the request id identifies it in the logs",
            code="internal_error",
            request_id=_request_id(request),
        )
