"""Dashboard pages: pipelines and runs (run now, pause, resume), records and their journey.

Every read and action calls the JSON API's own route functions, so masking, 404s, 409s, locks
and audit entries are exactly the API's.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import JSONResponse, Response

from junction.api.context import ctx_of
from junction.api.dashboard import aggregates, counts
from junction.api.dashboard.cache import cached
from junction.api.dashboard.session import UI_OPERATE, UI_READ
from junction.api.dashboard.views import flash_back
from junction.api.dashboard.web import PREFIX, DashboardRoute, render
from junction.api.policy import Principal
from junction.api.problems import ApiProblem
from junction.api.routes import outbox, pipelines, record_reads
from junction.api.runtime import require_pipeline

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
Name = Annotated[str, Path(max_length=64)]


def _runs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for run in items:
        end = run.get("finished_at")
        run["duration_s"] = None if end is None else max(0.0, end - run["started_at"])
    return items


@router.get("/pipelines")
def pipelines_page(request: Request, principal: Annotated[Principal, Depends(UI_READ)]) -> Response:
    """Every pipeline with its state and newest run; the latest runs."""
    items = pipelines.list_pipelines(request, principal)["items"]
    runs = pipelines.list_runs(request, principal, None, None, 50, None)["items"]
    return render(request, "pipelines.html", {"pipelines": items, "runs": _runs(runs)})


@router.get("/pipelines/{name}")
def pipeline_page(
    request: Request,
    name: Name,
    principal: Annotated[Principal, Depends(UI_READ)],
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """One pipeline: totals, cursors, runs (paged)."""
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    # show_pipeline's fields; its totals (store.counts' fields) estimated where they are large
    # (counts.pipeline_totals) and cached for a few seconds
    found = pipelines.list_pipelines(request, principal)["items"]
    detail = next(p for p in found if p["name"] == name)
    totals = cached(ctx, ("counts", name), partial(counts.pipeline_totals, ctx.store, name))
    detail["counts"] = totals.values
    detail["approx"] = totals.approx
    cursors = pipelines.list_cursors(request, name, principal)["items"]
    runs = pipelines.list_runs(request, principal, name, None, 50, cursor)
    return render(
        request,
        "pipeline.html",
        {
            "p": detail,
            "cursors": cursors,
            "runs": _runs(runs["items"]),
            "next": runs["next"],
        },
    )


def _act(request: Request, name: str, action: str, principal: Principal) -> Response:
    back = f"{PREFIX}/pipelines/{name}"
    if action == "run":
        out = pipelines.run_pipeline(request, name, principal)
        if isinstance(out, JSONResponse):
            state = orjson.loads(bytes(out.body)).get("state", "queued")
            return flash_back(request, back, "ok", f"Run requested ({state}).")
        text = (
            f"Run {out['run_id']} finished: {out['read']} read, {out['stored']} stored, "
            f"{out['quarantined']} quarantined."
        )
        return flash_back(request, back, "ok", text)
    changed = (pipelines.pause_pipeline if action == "pause" else pipelines.resume_pipeline)(
        request, name, principal
    )
    verb = "paused" if action == "pause" else "resumed"
    if not changed["changed"]:
        return flash_back(request, back, "info", f"The pipeline was already {verb}.")
    return flash_back(request, back, "ok", f"Pipeline {verb}.")


@router.post("/pipelines/{name}/run")
def run_now(
    request: Request, name: Name, principal: Annotated[Principal, Depends(UI_OPERATE)]
) -> Response:
    """Run the pipeline now (queued with the scheduler under ``junction serve``)."""
    return _act(request, name, "run", principal)


@router.post("/pipelines/{name}/pause")
def pause(
    request: Request, name: Name, principal: Annotated[Principal, Depends(UI_OPERATE)]
) -> Response:
    """Pause the pipeline."""
    return _act(request, name, "pause", principal)


@router.post("/pipelines/{name}/resume")
def resume(
    request: Request, name: Name, principal: Annotated[Principal, Depends(UI_OPERATE)]
) -> Response:
    """Resume the pipeline."""
    return _act(request, name, "resume", principal)


# records


@router.get("/records")
def records_page(
    request: Request,
    principal: Annotated[Principal, Depends(UI_READ)],
    key: Annotated[str, Query(max_length=384)] = "",
    email: Annotated[str, Query(max_length=320)] = "",
    pipeline: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Search records by source key (email search needs a pseudonym index the store lacks)."""
    ctx = ctx_of(request)
    names = sorted(ctx.cfg.pipelines)
    if pipeline:
        require_pipeline(ctx, pipeline)
    found: list[dict[str, Any]] | None = None
    email_unavailable = False
    if key.strip():
        found = aggregates.find_records(ctx.store, key.strip(), pipeline=pipeline or None)
    elif email.strip():
        # matched by keyed pseudonym: the store keeps subjects only with encryption at rest on
        privacy = ctx.store.privacy()
        if privacy is None:
            email_unavailable = True
        else:
            subjects = privacy.subject_of(email=email.strip())
            found = aggregates.find_records(ctx.store, subjects=subjects, pipeline=pipeline or None)
    recent: list[dict[str, Any]] = []
    if pipeline and found is None:
        recent = record_reads.list_records(request, pipeline, principal, 50, None)["items"]
    return render(
        request,
        "records.html",
        {
            "key": key,
            "email": email,
            "pipeline": pipeline,
            "pipelines": names,
            "found": found,
            "recent": recent,
            "email_unavailable": email_unavailable,
        },
    )


@router.get("/records/{name}/{record_id:path}")
def record_page(
    request: Request,
    name: Name,
    record_id: Annotated[str, Path(max_length=512)],
    principal: Annotated[Principal, Depends(UI_READ)],
) -> Response:
    """A record's journey: provenance, canonical payload (masked), scores, every delivery."""
    record = record_reads.show_record(request, name, record_id, principal, False)
    deliveries = []
    for d in record["deliveries"]:
        try:
            deliveries.append(outbox.show_delivery(request, d["id"], principal, False))
        except ApiProblem:
            deliveries.append({**d, "history": [], "payload": None})
    history = aggregates.quarantine_history(ctx_of(request).store, record["id"])
    return render(
        request, "record.html", {"r": record, "deliveries": deliveries, "quarantined": history}
    )
