"""Dashboard pages: sign in and out, static assets, the overview."""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.dashboard import aggregates, charts, counts
from junction.api.dashboard.cache import cached
from junction.api.dashboard.session import (
    COOKIE,
    UI_READ,
    clear_cookie,
    login_nonce_ok,
    read_session,
    set_flash,
    set_login_nonce,
    start_session,
)
from junction.api.dashboard.web import PREFIX, DashboardRoute, render
from junction.api.policy import READ, Principal, public
from junction.api.routes import pipelines
from junction.store.clients import CLIENT_ID, ApiClient, ClientStore, split_api_key

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

LOGIN_FORM = public("the dashboard's sign-in form: it is where credentials are given")
ASSETS = public("the dashboard's stylesheet and script: static files holding no data")
STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
WINDOWS = {1: "last hour", 6: "last 6 hours", 24: "last 24 hours", 168: "last 7 days"}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if (
        target
        and target.startswith(PREFIX)
        and not target.startswith("//")
        and "\\" not in target
        and "://" not in target
    ):
        return target
    return f"{PREFIX}/"


@router.get("/static/{name}")
def static(name: str, _: Annotated[Principal, Depends(ASSETS)]) -> Response:
    """A stylesheet or script shipped in the package (no CDN)."""
    media = STATIC.get(name)
    if media is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body = resources.files("junction.api.dashboard").joinpath("static", name).read_bytes()
    return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/login")
def login_form(
    request: Request,
    _: Annotated[Principal, Depends(LOGIN_FORM)],
    next: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """The sign-in form (an API client's id and secret, or an API key)."""
    if read_session(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, safe_next(next), None, 200)


def _login_page(request: Request, target: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    page = render(request, "login.html", {"next": target, "error": error, "token": token}, status)
    set_login_nonce(request, page, token)
    return page


def _verify(store: ClientStore, client_id: str, secret: str) -> ApiClient | None:
    if not client_id and secret.startswith("jk_"):
        parts = split_api_key(secret)
        return store.verify(parts[0], parts[1], kind="apikey") if parts else None
    return store.verify(client_id, secret, kind="oauth")


@router.post("/login")
def login(
    request: Request,
    _: Annotated[Principal, Depends(LOGIN_FORM)],
    client_id: Annotated[str, Form(max_length=64)] = "",
    secret: Annotated[str, Form(max_length=512)] = "",
    token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """Check the credentials; on success start a session and go on."""
    target = safe_next(next)

    def again(status: int, error: str) -> Response:
        return _login_page(request, target, error, status)

    if not login_nonce_ok(request, token):
        return again(403, "The form expired. Please sign in again.")
    clients = ClientStore(ctx_of(request).store)
    client = _verify(clients, client_id.strip(), secret.strip())
    if client is None:
        # only a well-formed client id is kept: people paste other things (emails) in there
        typed = client_id.strip()
        audit_action(request, "dashboard.login_failed", typed if CLIENT_ID.match(typed) else "-")
        return again(401, "Those credentials are not valid.")
    if not READ.allows(frozenset(client.roles)):
        audit_action(request, "dashboard.login_refused", client.id, actor=client.id)
        return again(403, "This client has no dashboard role (admin, operator or viewer).")
    clients.touch(client.id)
    response = RedirectResponse(target, status_code=303)
    start_session(response, request, client.id)
    audit_action(request, "dashboard.login", client.id, actor=client.id)
    return response


@router.post("/logout")
def logout(request: Request, principal: Annotated[Principal, Depends(UI_READ)]) -> Response:
    """End the session."""
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    clear_cookie(response, request, COOKIE)
    audit_action(request, "dashboard.logout", principal.client_id)
    return response


def _labels(tl: aggregates.Timeline) -> list[str]:
    from datetime import UTC, datetime

    fmt = "%d %b" if tl.bucket_s >= 86400 else "%H:%M"
    return [datetime.fromtimestamp(tl.label(i), UTC).strftime(fmt) for i in range(tl.buckets)]


@router.get("/")
def overview(
    request: Request,
    principal: Annotated[Principal, Depends(UI_READ)],
    hours: Annotated[int, Query(ge=1, le=168)] = 24,
) -> Response:
    """Flow per stage over time, throughput, quarantine growth, delivery success, outbox lag."""
    ctx = ctx_of(request)
    hours = hours if hours in WINDOWS else 24
    tl = cached(ctx, ("timeline", hours), lambda: aggregates.timeline(ctx.store, hours=hours))
    labels = _labels(tl)
    s = tl.series
    per_min = tl.bucket_s / 60
    groups = cached(ctx, "quarantine_groups", lambda: aggregates.quarantine_groups(ctx.store))
    open_q = sum(g["n"] for g in groups)
    grown = sum(s["quarantined"])
    # pending per channel (the backlog, through the due index), not every channel's totals
    backlog = cached(ctx, "pending_by_channel", lambda: aggregates.pending_by_channel(ctx.store))
    pending = {name: backlog.get(name, 0) for name in sorted(ctx.cfg.channels)}
    figures: dict[str, Any] = {
        "stages": charts.line_chart(
            "Records per stage",
            {k: [float(v) for v in s[k]] for k in ("received", "scored", "quarantined")}
            | {"delivered": [float(v) for v in s["delivered"]]},
            labels,
        ),
        "throughput": charts.bar_chart(
            "Throughput (records received per minute)",
            [v / per_min for v in s["received"]],
            labels,
        ),
        "quarantine": charts.line_chart(
            "Quarantine growth (open entries)",
            {"quarantined": charts.cumulative(s["quarantined"], max(0, open_q - grown))},
            labels,
        ),
        "success": charts.line_chart(
            "Delivery success rate",
            {"delivered": charts.rate(s["delivered"], s["dead"])},
            labels,
            unit="%",
        ),
        "lag": charts.bar_chart(
            "Pending deliveries per channel",
            [float(v) for v in pending.values()],
            list(pending),
        ),
    }
    by_status = cached(ctx, "delivery_totals", lambda: counts.delivery_totals(ctx.store))
    totals = by_status.values
    done = totals.get("delivered", 0) + totals.get("dead", 0)
    return render(
        request,
        "overview.html",
        {
            "hours": hours,
            "windows": WINDOWS,
            "charts": figures,
            "totals": {k: sum(v) for k, v in s.items()},
            "lag": aggregates.outbox_lag(ctx.store),
            "as_of": tl.start + tl.bucket_s * tl.buckets,
            "open_quarantine": open_q,
            "success_all": (100.0 * totals.get("delivered", 0) / done) if done else None,
            "success_approx": bool(by_status.approx & {"delivered", "dead"}),
            "pipelines": pipelines.list_pipelines(request, principal)["items"],
        },
    )


def flash_back(request: Request, url: str, kind: str, text: str) -> Response:
    """Redirect (303) to ``url`` with a one-shot message."""
    response = RedirectResponse(url, status_code=303)
    set_flash(response, request, kind, text)
    return response


def not_found(request: Request, _: Annotated[Principal, Depends(UI_READ)]) -> Response:
    """Any other path under /ui: a page saying so (with the dashboard's headers)."""
    return render(request, "error.html", {"title": "Not found", "detail": "No such page."}, 404)
