"""The FastAPI application factory: routers, problem+json errors, request ids, auth and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from junction.api import dashboard
from junction.api.bodylimit import BodyLimitMiddleware
from junction.api.concurrency import InFlightGate, InFlightMiddleware, document_limits
from junction.api.context import ApiContext
from junction.api.middleware import RequestIdMiddleware
from junction.api.policy import Authenticator
from junction.api.problems import install_problem_handlers
from junction.api.routes import (
    alerts,
    audit,
    auth,
    callbacks_sendgrid,
    callbacks_twilio,
    commerceml,
    health,
    hooks,
    models,
    ops,
    outcomes,
    records,
    score,
    subjects,
)

API_PREFIX = "/api/v1"
VERSION = "0.1.0"


def create_app(
    ctx: ApiContext,
    *,
    authenticator: Authenticator | None = None,
    rate_limiter: Any = None,
) -> FastAPI:
    """Build the app for one hub; auth and rate limits default to the store-backed ones."""
    app = FastAPI(
        title="Junction",
        version=VERSION,
        description="Enterprise integration hub: control plane, scoring API, inbound webhooks.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.ctx = ctx
    if authenticator is None:
        from junction.api.auth import StoreAuthenticator

        authenticator = StoreAuthenticator.from_context(ctx)
    app.state.authenticator = authenticator
    if rate_limiter is None:
        from junction.api.ratelimit import ClientRateLimiter

        rate_limiter = ClientRateLimiter.from_config(ctx.cfg.api)
    app.state.rate_limiter = rate_limiter
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(hooks.router)
    app.include_router(callbacks_sendgrid.router)  # SendGrid's signed event webhook (public)
    app.include_router(callbacks_twilio.router)  # Twilio status and inbound SMS (public)
    app.include_router(commerceml.router)  # 1C's CommerceML exchange (public: its own login)
    for module in (auth, score, records, ops, alerts, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(models.router, prefix=API_PREFIX)  # the model registry (issue 7)
    # outcomes: labels for A/B reports and training (issue 7)
    app.include_router(outcomes.router, prefix=API_PREFIX)
    app.include_router(dashboard.router)  # the web dashboard at /ui (issue 10)
    app.include_router(subjects.router, prefix=API_PREFIX)  # erasure by subject (issue 9)
    # body limits inside the request id (so a 413 carries one); hooks have their own limits
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=ctx.cfg.api.max_body_bytes,
        path_limits={f"/hooks/{s}": h.max_body_bytes for s, h in ctx.cfg.api.hooks.items()},
    )
    # in-flight limits outside the body limit: a refused request's body is never read
    api = ctx.cfg.api
    gate = InFlightGate(
        api.max_in_flight, api.shed_ratio, api.client_max_in_flight, api_prefix=API_PREFIX
    )
    app.state.in_flight = gate
    app.add_middleware(InFlightMiddleware, gate=gate)
    _document_limits(app)
    app.add_middleware(RequestIdMiddleware)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, close what the app opened on its event loop (the limiter's Redis pool)."""
    yield
    close = getattr(app.state.rate_limiter, "aclose", None)
    if close is not None:
        await close()


def _document_limits(app: FastAPI) -> None:
    """The OpenAPI document names the 429 and 503 answers the limits may give every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            document_limits(schema, api_prefix=API_PREFIX, token_path=f"{API_PREFIX}/oauth/token")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
