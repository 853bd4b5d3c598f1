"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (store reachable, models loaded)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import text

from junction.api.context import ctx_of
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem

router = APIRouter(tags=["health"])
PROBE = public("liveness and readiness probes are called by the orchestrator without credentials")


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
    for name, p in ctx.cfg.pipelines.items():
        if p.scoring is None:
            continue
        try:
            ctx.hub.runner(name)
            checks[f"model:{name}"] = "ok"
        except Exception as exc:  # noqa: BLE001 - as above
            checks[f"model:{name}"] = type(exc).__name__
    if any(v != "ok" for v in checks.values()):
        raise ApiProblem(
            503,
            "Not ready",
            "a dependency is not ready",
            code="not_ready",
            extra={"checks": checks},
        )
    return {"status": "ready", "checks": checks}
