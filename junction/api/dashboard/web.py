"""Rendering: Jinja2 templates, security headers on every page, HTML errors for people.

Every dashboard response carries a Content-Security-Policy with a per-response nonce (scripts
only from this app, no inline script without the nonce, no inline styles, no framing), plus
``X-Frame-Options``, ``nosniff``, ``same-origin`` referrers and ``no-store``.  The route class
turns the signals routes raise into pages: no session → the login form; an ``ApiProblem`` (or a
``JunctionError``) on a signed-in page → an error page with the same status.  Callers using API
credentials get the API's problem+json answers instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from junction.api.dashboard.session import (
    FLASH_COOKIE,
    METHOD,
    LoginRequired,
    clear_cookie,
    read_session,
    take_flash,
    wants_html,
)
from junction.api.policy import Principal
from junction.api.problems import ApiProblem, status_of
from junction.core.errors import JunctionError

PREFIX = "/ui"

ENV = Environment(
    loader=PackageLoader("junction.api.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


ENV.filters["when"] = _when
ENV.filters["dur"] = _dur
ENV.filters["q"] = lambda s: quote(str(s), safe="")
ENV.filters["pretty"] = lambda v: orjson.dumps(
    v, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str
).decode()


def security_headers(nonce: str) -> dict[str, str]:
    """The headers every dashboard page carries."""
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # not no-referrer: under it Chromium sends `Origin: null` with same-origin form posts
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def principal_of(request: Request) -> Principal | None:
    """The signed-in user (None on the login page, which is public)."""
    found: Principal | None = getattr(request.state, "principal", None)
    return None if found is None or found.method == "anonymous" else found


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """A page: the template with the user, their permissions, the CSRF token and any flash."""
    nonce = secrets.token_urlsafe(18)
    principal = principal_of(request)
    roles = principal.roles if principal is not None else frozenset()
    session = getattr(request.state, "session", None)
    flash = take_flash(request)
    page = ENV.get_template(template).render(
        request=request,
        prefix=PREFIX,
        nonce=nonce,
        user=principal,
        roles=sorted(roles),
        can_operate=bool(roles & {"admin", "operator"}),
        can_admin="admin" in roles,
        csrf=session.csrf if session is not None else "",
        flash=flash,
        **(context or {}),
    )
    response = HTMLResponse(page, status_code=status, headers=security_headers(nonce))
    if flash is not None:
        clear_cookie(response, request, FLASH_COOKIE)
    return response


def error_page(request: Request, status: int, title: str, detail: str | None) -> HTMLResponse:
    """An error shown as a page (status kept)."""
    return render(request, "error.html", {"title": title, "detail": detail}, status)


def _by_session(request: Request) -> bool:
    principal = principal_of(request)
    return principal is not None and principal.method == METHOD


class DashboardRoute(APIRoute):
    """Routes of the dashboard: security headers, and errors as pages for people."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                # after signing in, come back to the page (a form's target cannot be a page)
                target = request.url.path if request.method == "GET" else f"{PREFIX}/"
                if request.method == "GET" and request.url.query:
                    target += "?" + request.url.query
                response = RedirectResponse(
                    f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303
                )
            except ApiProblem as exc:
                if not (_by_session(request) or (read_session(request) and wants_html(request))):
                    raise
                response = error_page(request, exc.status, exc.title, exc.detail)
            except JunctionError as exc:
                if not _by_session(request):
                    raise
                response = error_page(request, status_of(exc), "Error", exc.user_message)
            if "content-security-policy" not in response.headers:
                # redirects and assets: the same headers, with a nonce nothing uses
                response.headers.update(security_headers(secrets.token_urlsafe(18)))
            return response

        return handler
