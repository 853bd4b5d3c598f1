"""ASGI middleware: a request id and the security headers on every response.

``RequestIdMiddleware`` is the outermost middleware ``create_app`` installs; it wraps the app in
``SecurityHeadersMiddleware``, so every answer (routes, problem+json errors, the body limit's
413, the OpenAPI page, an unexpected error's 500) carries the headers below.  A header a route
sets itself wins (the dashboard sends its own nonce-based Content-Security-Policy and caching).

| header | when | value |
|---|---|---|
| X-Content-Type-Options | always | ``nosniff`` |
| Referrer-Policy | always | ``no-referrer`` |
| X-Frame-Options | always | ``DENY`` (and ``frame-ancestors 'none'`` in the CSP) |
| Cross-Origin-Opener-Policy / -Resource-Policy | always | ``same-origin`` |
| Content-Security-Policy | HTML | ``default-src 'none'``, scripts and styles from ``'self'`` plus |
| | | the SHA-256 of each inline ``<script>`` (the API docs page also loads Swagger UI |
| | | from ``cdn.jsdelivr.net``), ``frame-ancestors 'none'``, ``base-uri 'none'`` |
| Content-Security-Policy | other | ``default-src 'none'; frame-ancestors 'none'`` |
| Strict-Transport-Security | https | ``max-age=31536000; includeSubDomains`` |
| Cache-Control | credentials sent, or the token endpoint | ``no-store`` |

"Credentials sent" means an ``Authorization``, ``X-API-Key`` or ``Cookie`` header: nothing
answered to an authenticated caller (records, tokens, exports) lands in a shared cache.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junction.api.problems import problem_response
from junction.core import tracing

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
NON_HTML_CSP = b"default-src 'none'; frame-ancestors 'none'"
HSTS = b"max-age=31536000; includeSubDomains"
# FastAPI's Swagger UI page loads its bundle and stylesheet from this CDN
DOCS_SOURCES = "https://cdn.jsdelivr.net"
DOCS_IMAGES = "https://fastapi.tiangolo.com"
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie"})
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


def html_csp(body: bytes, *, docs: bool = False) -> bytes:
    """The Content-Security-Policy of an HTML page: its own inline scripts, by hash, and no more.

    Args:
        body: the whole page.
        docs: the API docs page, which also loads Swagger UI from ``DOCS_SOURCES``.
    """
    hashes = sorted(
        {
            "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
            for m in _INLINE_SCRIPT.finditer(body)
        }
    )
    extra = f" {DOCS_SOURCES}" if docs else ""
    # Swagger UI sets style attributes (inline styles cannot run script)
    styles = f"style-src 'self' {DOCS_SOURCES} 'unsafe-inline'" if docs else "style-src 'self'"
    images = f"img-src 'self' data: {DOCS_IMAGES}" if docs else "img-src 'self' data:"
    parts = [
        "default-src 'none'",
        " ".join(["script-src 'self'", *hashes]) + extra,
        styles,
        images,
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
    return "; ".join(parts).encode()


class SecurityHeadersMiddleware:
    """Add the module's security headers to every HTTP response (a route's own headers win).

    Args:
        app: the ASGI app.
        docs_paths: path prefixes of the API docs pages (their CSP allows Swagger UI's CDN).
        no_store_paths: paths answered with ``Cache-Control: no-store`` even without
            credentials (the token endpoint: RFC 6749 section 5.1).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: Iterable[str] = ("/api/v1/docs",),
        no_store_paths: Iterable[str] = ("/api/v1/oauth/token",),
    ) -> None:
        self.app = app
        self.docs_paths = tuple(docs_paths)
        self.no_store_paths = frozenset(no_store_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        docs = path.startswith(self.docs_paths)
        https = scope.get("scheme") == "https"
        no_store = path in self.no_store_paths or any(
            k in CREDENTIAL_HEADERS for k, _ in scope.get("headers", ())
        )
        held: Message | None = None  # an HTML start, held until its body is complete
        chunks: list[bytes] = []
        started = False

        def finish(start: Message, body: bytes | None) -> Message:
            headers = list(start.get("headers", []))
            names = {k.lower() for k, _ in headers}
            extra = [(k, v) for k, v in ALWAYS if k not in names]
            if b"content-security-policy" not in names:
                csp = NON_HTML_CSP if body is None else html_csp(body, docs=docs)
                extra.append((b"content-security-policy", csp))
            if https and b"strict-transport-security" not in names:
                extra.append((b"strict-transport-security", HSTS))
            if no_store and b"cache-control" not in names:
                extra.append((b"cache-control", b"no-store"))
            return {**start, "headers": headers + extra}

        async def send_with_headers(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", [])
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                has_csp = any(k.lower() == b"content-security-policy" for k, _ in headers)
                if ctype.startswith(b"text/html") and not has_csp:
                    held = message  # the CSP hashes the page's inline scripts
                    return
                await send(finish(message, None))
                return
            if held is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                start = finish(held, body)
                held = None
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                # the app's catch-all handler runs in Starlette's outermost middleware, outside
                # this one: answer the same 500 here, with the headers (that handler still logs
                # the error and sends nothing more, the response having started)
                rid = scope.get("state", {}).get("request_id")
                response = problem_response(
                    500,
                    "Internal error",
                    "the server failed; the request id identifies it in the logs",
                    code="internal_error",
                    request_id=rid,
                )
                await response(scope, receive, send_with_headers)
            raise


class RequestIdMiddleware:
    """Take a sane ``X-Request-ID`` from the caller or make one; echo it in the response.

    With tracing on, each request runs in a ``junction.http`` span that continues the caller's
    ``traceparent`` header (a malformed one is ignored and a new trace starts).

    The app inside is wrapped in ``SecurityHeadersMiddleware`` (see the module docstring).
    """

    def __init__(self, app: ASGIApp, *, security_headers: bool = True) -> None:
        self.app = SecurityHeadersMiddleware(app) if security_headers else app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = given.decode() if given is not None and _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", raw)]
                status.append(int(message.get("status", 0)))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            if not tracing.enabled():
                await self.app(scope, receive, send_with_id)
                return
            # the caller's W3C traceparent, continued by the request's span: records a pushed
            # request creates are stored under that trace (ADR-0022); method and status only,
            # the path may hold a record id
            given_tp = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
            parent = given_tp.decode("latin-1") if given_tp is not None else None
            attrs = {"http.request.method": str(scope.get("method", ""))[:16]}
            with tracing.span("junction.http", attrs, parent=parent, server=True) as sp:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    if status:
                        sp.set("http.response.status_code", status[0])
