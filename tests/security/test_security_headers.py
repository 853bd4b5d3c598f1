"""Security headers on every API response (``junction.api.middleware``).

Over real HTTP against the real app: public and authenticated JSON, problem+json errors (401,
404, 413), the token endpoint, the HTML docs page (its CSP carries the hash of its inline script
and nothing else inline), and every GET route of the table; over ASGI with an ``https`` scope for
Strict-Transport-Security; and against a small app for the rules a route can override.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from junction.api.middleware import SecurityHeadersMiddleware
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.api.test_rbac_matrix import api_routes

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture
def api(tmp_path: Path, models_dir: Path) -> Iterator[ApiHarness]:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    with running_api(write_api_config(tmp_path, store=store, models=models_dir)) as harness:
        yield harness


def assert_always(r: httpx.Response, *, exact: bool = True) -> None:
    """The headers every answer has; ``exact=False`` lets a route's own values stand."""
    for name, value in ALWAYS.items():
        got = r.headers.get(name)
        assert got == value if exact else bool(got), (r.request.url, name, got)
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (r.request.url, csp)
    assert "x-request-id" in r.headers


def test_public_json_has_the_headers_but_may_be_cached(api: ApiHarness) -> None:
    with api.http() as http:
        r = http.get("/healthz")
    assert r.status_code == 200
    assert_always(r)
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "strict-transport-security" not in r.headers  # plain http
    assert "cache-control" not in r.headers


def test_authenticated_json_is_never_stored(api: ApiHarness) -> None:
    with api.http() as http:
        for headers in (api.headers("viewer"), {"X-API-Key": api.api_key("viewer")}):
            r = http.get("/api/v1/pipelines", headers=headers)
            assert r.status_code == 200, r.text
            assert_always(r)
            assert r.headers["cache-control"] == "no-store"


def test_errors_carry_the_headers(api: ApiHarness) -> None:
    with api.http() as http:
        unauthenticated = http.get("/api/v1/audit")
        missing = http.get("/api/v1/pipelines/nope", headers=api.headers("viewer"))
        too_big = http.post(
            "/api/v1/score",
            content=b"x" * (api.ctx.cfg.api.max_body_bytes + 1),
            headers={**api.headers("ingest"), "Content-Type": "application/json"},
        )
    assert (unauthenticated.status_code, missing.status_code, too_big.status_code) == (
        401,
        404,
        413,
    )
    for r in (unauthenticated, missing, too_big):
        assert_always(r)
    assert missing.headers["cache-control"] == "no-store"


def test_an_unexpected_error_answers_500_with_the_headers(api: ApiHarness) -> None:
    def boom() -> None:
        raise RuntimeError("an invariant broke")

    api.app.add_api_route("/boom-for-headers-test", boom)
    with api.http() as http:
        r = http.get("/boom-for-headers-test", headers={"X-Request-ID": "req-boom-1"})
    assert r.status_code == 500
    assert_always(r)
    assert r.headers["x-request-id"] == "req-boom-1"
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] == "req-boom-1"
    assert "invariant" not in r.text


def test_the_token_endpoint_is_never_stored(api: ApiHarness) -> None:
    client, secret = api.clients.create("headers-test", ["viewer"])
    with api.http() as http:
        r = http.post(
            "/api/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.id,
                "client_secret": secret,
            },
        )
    assert r.status_code == 200
    assert_always(r)
    assert r.headers["cache-control"] == "no-store"


def test_the_docs_page_csp_allows_only_its_own_inline_script(api: ApiHarness) -> None:
    with api.http() as http:
        r = http.get("/api/v1/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert_always(r)
    parts = r.headers["content-security-policy"].split("; ")
    csp = {name: value for name, _, value in (part.partition(" ") for part in parts)}
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    assert inline, "the docs page has an inline script to hash"
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    }
    script_src = set(csp["script-src"].split())
    assert hashes <= script_src
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src
    assert csp["default-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert int(r.headers["content-length"]) == len(r.content)  # the held body is intact


def test_every_get_route_answers_with_the_headers(api: ApiHarness) -> None:
    headers = api.headers("admin")
    with api.http(headers=headers) as http:
        paths = {
            re.sub(r"\{[^}]+\}", "leads", template)
            for template, methods, _c, _d in api_routes(api.app)
            if "GET" in methods
        }
        assert len(paths) > 10
        for path in sorted(paths):
            r = http.get(path)
            # the dashboard (/ui) sends its own values (e.g. Referrer-Policy: same-origin)
            assert_always(r, exact=not path.startswith("/ui"))
            assert "no-store" in r.headers["cache-control"] or path.startswith("/ui/static"), (
                path,
                r.headers.get("cache-control"),
            )


# --------------------------------------------------------------------------- the rules


async def _page(request: Request) -> Response:
    return HTMLResponse("<html><script>var a = 1;</script><script src='/x.js'></script></html>")


async def _own(request: Request) -> Response:
    return HTMLResponse(
        "<p>x</p>",
        headers={
            "Content-Security-Policy": "default-src 'self'",
            "Cache-Control": "public, max-age=60",
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


async def _stream(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"<html><scr"
        yield b"ipt>go()</script>"
        yield b"</html>"

    return StreamingResponse(parts(), media_type="text/html")


async def _json(request: Request) -> Response:
    return JSONResponse({"ok": True})


def small_app() -> SecurityHeadersMiddleware:
    app = Starlette(
        routes=[
            Route("/page", _page),
            Route("/own", _own),
            Route("/stream", _stream),
            Route("/json", _json),
        ]
    )
    return SecurityHeadersMiddleware(app)


async def _get(base: str, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=small_app())
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        return await client.get(path, headers=headers)


def get(base: str, path: str, **headers: str) -> httpx.Response:
    return asyncio.run(_get(base, path, **headers))


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_html_csp_hashes_inline_scripts_and_only_those() -> None:
    r = get("http://hub", "/page")
    csp = r.headers["content-security-policy"]
    assert f"script-src 'self' {_sha('var a = 1;')};" in csp
    assert "cdn.jsdelivr.net" not in csp  # only the docs page loads Swagger UI's CDN
    assert r.text.endswith("</html>")


def test_a_streamed_page_is_hashed_whole() -> None:
    r = get("http://hub", "/stream")
    assert _sha("go()") in r.headers["content-security-policy"]
    assert r.text == "<html><script>go()</script></html>"


def test_a_routes_own_headers_win() -> None:
    r = get("http://hub", "/own", Cookie="session=x")
    assert r.headers["content-security-policy"] == "default-src 'self'"
    assert r.headers["cache-control"] == "public, max-age=60"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_hsts_only_over_https_and_no_store_only_with_credentials() -> None:
    plain = get("http://hub", "/json")
    secure = get("https://hub", "/json", Authorization="Bearer x")
    assert "strict-transport-security" not in plain.headers
    assert "cache-control" not in plain.headers
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert secure.headers["cache-control"] == "no-store"
    assert secure.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
