"""The dashboard's session: a signed cookie, CSRF tokens, and the policy that reads them.

A session is a cookie holding ``{sub, iat, exp, csrf}`` signed with HMAC-SHA256 under a key
derived from the API signing key (so no second secret to manage, and a key rotation logs
everyone out).  Every request re-reads the client from the store: a revoked client or a removed
role takes effect on the next page, not at cookie expiry.  Forms carry the session's ``csrf``
value; a POST without it (or with another session's) is refused with 403, and the cookie is
``SameSite=Strict`` on top.

``SessionPolicy`` is a ``Policy``: the route table test sees exactly one per route, and callers
without a session fall through to the API's own bearer-token and API-key authentication, so
scripts get the same 401/403 problem+json answers as everywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import Response

from junction.api.auth import resolve_signing_key, state_dir
from junction.api.context import ctx_of
from junction.api.policy import Policy, Principal, count_request
from junction.api.problems import ApiProblem
from junction.store.clients import ClientStore

COOKIE = "junction_ui"
LOGIN_COOKIE = "junction_ui_login"  # the login form's CSRF nonce, before there is a session
FLASH_COOKIE = "junction_ui_flash"
COOKIE_PATH = "/ui"
SESSION_TTL_S = 8 * 3600
LOGIN_TTL_S = 900
FLASH_TTL_S = 60
METHOD = "session"
_KEY = "dashboard.session_key"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """No valid session on a browser request: the route class redirects to the login form."""


@dataclass(frozen=True)
class Session:
    """A signed-in dashboard user (an API client)."""

    sub: str
    iat: int
    exp: int
    csrf: str


def session_key(request: Request) -> bytes:
    """The cookie signing key: derived from the API signing key, made once per app."""
    ctx = ctx_of(request)
    key: bytes | None = ctx.extras.get(_KEY)
    if key is None:
        base = resolve_signing_key(ctx.cfg.api, state_dir(ctx.cfg))
        key = hmac.new(base, b"junction dashboard session v1", hashlib.sha256).digest()
        ctx.extras[_KEY] = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, purpose: str, data: dict[str, Any]) -> str:
    """``data`` as a signed cookie value; ``purpose`` keeps one kind from passing as another."""
    body = _b64(orjson.dumps(data))
    mac = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(key: bytes, purpose: str, value: str | None) -> dict[str, Any] | None:
    """The data of a value ``sign`` made for ``purpose`` and not expired (``exp``), else None."""
    if not value or len(value) > 4096 or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    want = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(want, _unb64(mac)):
            return None
        data = orjson.loads(_unb64(body))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or float(data.get("exp", 0)) < time.time():
        return None
    return data


def read_session(request: Request) -> Session | None:
    """The request's valid session, if it has one."""
    data = unsign(session_key(request), "session", request.cookies.get(COOKIE))
    if data is None:
        return None
    try:
        return Session(str(data["sub"]), int(data["iat"]), int(data["exp"]), str(data["csrf"]))
    except (KeyError, TypeError, ValueError):
        return None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """Set one of the dashboard's cookies: HttpOnly, SameSite=Strict, scoped to /ui."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    """Delete one of the dashboard's cookies."""
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def start_session(response: Response, request: Request, client_id: str) -> Session:
    """Sign ``client_id`` in: a new session (and CSRF token) in the cookie."""
    now = int(time.time())
    session = Session(client_id, now, now + SESSION_TTL_S, secrets.token_urlsafe(32))
    value = sign(session_key(request), "session", session.__dict__)
    set_cookie(response, request, COOKIE, value, SESSION_TTL_S)
    clear_cookie(response, request, LOGIN_COOKIE)
    return session


def set_login_nonce(request: Request, response: Response, nonce: str) -> None:
    """Keep a login form's CSRF token in a signed cookie until the form comes back."""
    value = sign(session_key(request), "login", {"nonce": nonce, "exp": time.time() + LOGIN_TTL_S})
    set_cookie(response, request, LOGIN_COOKIE, value, LOGIN_TTL_S)


def login_nonce_ok(request: Request, given: str) -> bool:
    """Whether the login form came back with the nonce its cookie holds."""
    data = unsign(session_key(request), "login", request.cookies.get(LOGIN_COOKIE))
    return bool(data) and hmac.compare_digest(str(data["nonce"]) if data else "", given)


def set_flash(response: Response, request: Request, kind: str, text: str) -> None:
    """A one-shot message for the next page (after a redirect)."""
    value = sign(
        session_key(request),
        "flash",
        {"kind": kind, "text": text[:500], "exp": time.time() + FLASH_TTL_S},
    )
    set_cookie(response, request, FLASH_COOKIE, value, FLASH_TTL_S)


def take_flash(request: Request) -> dict[str, str] | None:
    """The pending message, if any (the page that shows it clears the cookie)."""
    data = unsign(session_key(request), "flash", request.cookies.get(FLASH_COOKIE))
    if data is None:
        return None
    return {"kind": str(data.get("kind", "info")), "text": str(data.get("text", ""))}


def wants_html(request: Request) -> bool:
    """A browser navigation (HTML accepted, no API credentials sent)."""
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        return False
    return "text/html" in request.headers.get("accept", "")


def csrf_refused() -> ApiProblem:
    """The answer to a form without its CSRF token (or from another origin)."""
    return ApiProblem(
        403,
        "Form expired",
        "the form's security token is missing or does not match your session; reload the page",
        code="csrf_failed",
    )


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # absent: an older client; "null": a sandboxed or opaque origin
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def check_csrf(request: Request, session: Session) -> None:
    """403 unless an unsafe request carries the session's CSRF token from our own origin."""
    if request.method in _SAFE:
        return
    form: FormData = await request.form()
    given = form.get("csrf")
    if (
        not isinstance(given, str)
        or not hmac.compare_digest(given, session.csrf)
        or not _same_origin(request)
    ):
        raise csrf_refused()


class SessionPolicy(Policy):
    """A ``Policy`` that also accepts the dashboard's session cookie (CSRF-checked)."""

    async def __call__(self, request: Request) -> Principal:
        session = read_session(request)
        if session is None:
            if wants_html(request):
                raise LoginRequired
            # scripts: the API's bearer tokens and API keys, with its 401/403 problems
            return await super().__call__(request)
        store = ClientStore(ctx_of(request).store)
        client = await asyncio.to_thread(store.get, session.sub)
        if client is None or not client.active:
            raise LoginRequired
        principal = Principal(client.id, frozenset(client.roles), METHOD, client.rate_limit)
        request.state.principal = principal
        request.state.session = session
        await count_request(request, principal)
        await check_csrf(request, session)
        if not self.allows(principal.roles):
            raise ApiProblem(
                403, "Forbidden", "your roles do not allow this action", code="forbidden"
            )
        return principal


# the dashboard's policies: the same role sets as the API's READ, OPERATE and ADMIN
UI_READ = SessionPolicy("admin", "operator", "viewer")
UI_OPERATE = SessionPolicy("admin", "operator")
UI_ADMIN = SessionPolicy("admin")
