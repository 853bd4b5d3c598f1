"""Probes: ``/healthz`` (the process answers), ``/readyz`` (store reachable, models loaded, the
service not shutting down) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from junction.api.concurrency import InFlightGate
from junction.api.context import SCHEDULER, ctx_of
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem
from junction.api.scoring import LeadScoring
from junction.core import metrics
from junction.core.errors import JunctionError
from junction.core.logging import get_logger
from junction.store import tables as t
from junction.store.repo import Store

log = get_logger(__name__)

router = APIRouter(tags=["health"])
PROBE = public("liveness and readiness probes are called by the orchestrator without credentials")
SCRAPE = public(
    "Prometheus scrapes without credentials; the figures name pipelines and channels, "
    "never records or clients"
)


@router.get("/healthz")
async def healthz(_: Annotated[Principal, Depends(PROBE)]) -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, _: Annotated[Principal, Depends(PROBE)]) -> dict[str, Any]:
    """Ready to take work: the store answers and every scored pipeline's model loads."""
    ctx = ctx_of(request)
    checks: dict[str, str] = {}
    try:
        with ctx.store.begin() as conn:
            conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type says why
        checks["store"] = type(exc).__name__
    # a failed reload after a promotion keeps the verified model: reported, not a 503 (every
    # replica shares the models folder; a 503 would take them all out of rotation together)
    stale: dict[str, str] = {}
    svc = ctx.extras.get("lead_scoring")
    if isinstance(svc, LeadScoring):
        stale.update({f"api:{p}": f["code"] for p, f in svc.reload_failures().items()})
    for name, p in ctx.cfg.pipelines.items():
        if p.scoring is None:
            continue
        try:
            runner = ctx.hub.runner(name)
            checks[f"model:{name}"] = "ok"
        except Exception as exc:  # noqa: BLE001 - as above
            checks[f"model:{name}"] = type(exc).__name__
            continue
        if runner.model is not None and runner.model.failure is not None:
            stale[f"pipeline:{name}"] = runner.model.failure.code
    scheduler = ctx.extras.get(SCHEDULER)
    if scheduler is not None:
        checks["scheduler"] = "ok" if scheduler.ready() else "stopping"
    if any(v != "ok" for v in checks.values()):
        raise ApiProblem(
            503,
            "Not ready",
            "a dependency is not ready",
            code="not_ready",
            extra={"checks": checks},
        )
    body: dict[str, Any] = {"status": "ready", "checks": checks}
    if stale:
        body["stale_models"] = stale
    return body


def outbox_lag(store: Store) -> float | None:
    """Seconds the oldest due pending delivery has waited (0 when none); None if unreachable."""
    now = time.time()
    disabled = select(t.endpoints.c.channel).where(t.endpoints.c.disabled.is_(True))
    try:
        with store.begin() as conn:
            oldest = conn.execute(
                select(func.min(t.deliveries.c.next_attempt_at)).where(
                    t.deliveries.c.status == "pending",
                    t.deliveries.c.next_attempt_at <= now,
                    t.deliveries.c.channel.not_in(disabled),
                )
            ).scalar()
    except JunctionError as exc:
        log.warning("outbox lag unavailable", error=type(exc).__name__)
        return None
    return 0.0 if oldest is None else max(0.0, now - float(oldest))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def prometheus_metrics(request: Request, _: Annotated[Principal, Depends(SCRAPE)]) -> Response:
    """Counters and histograms in the Prometheus text format, plus the outbox lag."""
    store = ctx_of(request).store
    extra: list[Collector] = [metrics.OutboxLagCollector(lambda: outbox_lag(store))]
    gate: InFlightGate | None = getattr(request.app.state, "in_flight", None)
    if gate is not None:
        refused = [gate.refused_counts]
        # an injected limiter may keep no counts
        counts = getattr(getattr(request.app.state, "rate_limiter", None), "refused_counts", None)
        if counts is not None:
            refused.append(counts)
        extra.append(metrics.ApiLoadCollector(lambda: gate.in_flight, *refused))
    body = metrics.exposition(*extra)
    return Response(content=body, media_type=metrics.CONTENT_TYPE_LATEST)
