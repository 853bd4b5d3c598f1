"""Routes: pipelines (list, show, run, pause, resume), their runs and their cursors.

Reads need READ; running, pausing and moving cursors need OPERATE.  Cursor resets are for
backfills and keep the live position: see ``junction.store.operations`` (ADR-0010).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import Connection
from starlette.responses import JSONResponse

from junction.api.audit import audit_action
from junction.api.context import SCHEDULER, ApiContext, SchedulerControl, ctx_of
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import OPERATE, READ, Principal
from junction.api.problems import ApiProblem
from junction.api.runtime import require_pipeline, run_lock, runner_for
from junction.api.schemas import (
    CursorOut,
    CursorResetOut,
    CursorResetRequest,
    CursorRestoreOut,
    CursorRestoreRequest,
    Page,
    PausedOut,
    PipelineDetail,
    PipelineOut,
    Responses,
    RunOut,
    RunQueuedOut,
    RunSummaryOut,
    problem,
)
from junction.store import operations, queries

router = APIRouter(tags=["pipelines"])
Name = Annotated[str, Path(max_length=64, description="Pipeline name.")]
_404: Responses = {404: problem("Unknown pipeline.")}
_409: Responses = {409: problem("The pipeline's state forbids it.")}


def _scheduler(ctx: ApiContext) -> SchedulerControl | None:
    found: SchedulerControl | None = ctx.extras.get(SCHEDULER)
    return found


def _pipeline(ctx: ApiContext, name: str, paused: set[str], last: dict[str, Any]) -> dict[str, Any]:
    p = ctx.cfg.pipelines[name]
    channels = sorted({c for r in p.routes for c in r.targets})
    return {
        "name": name,
        "connector": p.source.connector,
        "mapping": p.mapping if "/" not in p.mapping else p.mapping.rsplit("/", 1)[-1],
        "schedule": p.source.schedule,
        "model": p.scoring.model if p.scoring else None,
        "channels": channels,
        "paused": name in paused,
        "last_run": last.get(name),
    }


def _paused(ctx: ApiContext) -> set[str]:
    return {n for n, v in queries.pipeline_states(ctx.store).items() if v}


def _require_paused(ctx: ApiContext, name: str) -> None:
    if not queries.is_paused(ctx.store, name):
        raise ApiProblem(
            409,
            "Pipeline not paused",
            "pause the pipeline first, so a running batch cannot move the cursor meanwhile",
            code="pipeline_not_paused",
        )


@router.get("/pipelines", response_model=Page[PipelineOut])
def list_pipelines(request: Request, _: Annotated[Principal, Depends(READ)]) -> dict[str, Any]:
    """Every configured pipeline with its paused state and newest run."""
    ctx = ctx_of(request)
    names = sorted(ctx.cfg.pipelines)
    last = queries.last_runs(ctx.store, names)
    paused = _paused(ctx)
    return page("pipelines", [_pipeline(ctx, n, paused, last) for n in names], None)


@router.get("/pipelines/{name}", response_model=PipelineDetail, responses=_404)
def show_pipeline(
    request: Request, name: Name, _: Annotated[Principal, Depends(READ)]
) -> dict[str, Any]:
    """One pipeline with its totals (records, scores, open quarantine, deliveries)."""
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    out = _pipeline(ctx, name, _paused(ctx), queries.last_runs(ctx.store, [name]))
    out["counts"] = ctx.store.counts(name)
    return out


@router.post(
    "/pipelines/{name}/run",
    response_model=RunSummaryOut,
    responses={
        202: {"model": RunQueuedOut, "description": "Handed to the running scheduler."},
        **_404,
        **_409,
    },
)
def run_pipeline(request: Request, name: Name, _: Annotated[Principal, Depends(OPERATE)]) -> Any:
    """Run a pipeline now: queued with the scheduler when the service runs one, else run here.

    Without a scheduler the run happens during the request and its counts are the answer.
    A paused pipeline, or one the API is already running, answers 409.
    """
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    scheduler = _scheduler(ctx)
    if scheduler is not None:
        state = scheduler.request_run(name)
        if state == "paused":
            raise _paused_problem()
        audit_action(request, "pipeline.run", name, {"via": "scheduler", "state": state})
        return JSONResponse({"pipeline": name, "queued": True, "state": state}, status_code=202)
    if queries.is_paused(ctx.store, name):
        raise _paused_problem()
    lock = run_lock(ctx, name)
    if not lock.acquire(blocking=False):
        raise ApiProblem(
            409, "Run in progress", "this pipeline is already running", code="run_in_progress"
        )
    try:
        summary = runner_for(ctx, name).run_once()
    finally:
        lock.release()
    out = {**summary.as_dict(), "errors": list(summary.errors)}
    audit_action(request, "pipeline.run", name, {"run_id": summary.run_id})
    return out


def _paused_problem() -> ApiProblem:
    return ApiProblem(409, "Pipeline paused", "resume the pipeline first", code="pipeline_paused")


def _set_paused(request: Request, name: str, paused: bool) -> dict[str, Any]:
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    action = "pipeline.pause" if paused else "pipeline.resume"
    scheduler = _scheduler(ctx)
    if scheduler is not None:
        was = queries.is_paused(ctx.store, name)
        (scheduler.pause if paused else scheduler.resume)(name)
        audit_action(request, action, name)
        return {"pipeline": name, "paused": paused, "changed": was != paused}

    def audit(conn: Connection) -> None:
        audit_action(request, action, name, conn=conn)

    changed = operations.set_paused(ctx.store, name, paused, audit=audit)
    return {"pipeline": name, "paused": paused, "changed": changed}


@router.post("/pipelines/{name}/pause", response_model=PausedOut, responses=_404)
def pause_pipeline(
    request: Request, name: Name, _: Annotated[Principal, Depends(OPERATE)]
) -> dict[str, Any]:
    """Stop starting runs of the pipeline (schedules, file drops, manual runs)."""
    return _set_paused(request, name, True)


@router.post("/pipelines/{name}/resume", response_model=PausedOut, responses=_404)
def resume_pipeline(
    request: Request, name: Name, _: Annotated[Principal, Depends(OPERATE)]
) -> dict[str, Any]:
    """Let the pipeline run again."""
    return _set_paused(request, name, False)


# runs


@router.get("/runs", response_model=Page[RunOut], responses={**_404, **PAGED})
def list_runs(
    request: Request,
    _: Annotated[Principal, Depends(READ)],
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(running|succeeded|failed|interrupted)$")] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Runs, newest first, optionally of one pipeline and in one status."""
    ctx = ctx_of(request)
    if pipeline is not None:
        require_pipeline(ctx, pipeline)
    after = decode_cursor("runs", cursor, int)
    rows, nxt = queries.list_runs(
        ctx.store, pipeline=pipeline, status=status, limit=limit, after=after
    )
    return page("runs", rows, nxt)


@router.get(
    "/runs/{run_id}",
    response_model=RunOut,
    responses={404: problem("Unknown run.")},
)
def show_run(
    request: Request,
    run_id: Annotated[int, Path(ge=1, le=2**62)],
    _: Annotated[Principal, Depends(READ)],
) -> dict[str, Any]:
    """One run with its counts."""
    run = queries.get_run(ctx_of(request).store, run_id)
    if run is None:
        raise ApiProblem(404, "Not found", "no such run", code="run_not_found")
    return run


# cursors


@router.get("/pipelines/{name}/cursors", response_model=Page[CursorOut], responses=_404)
def list_cursors(
    request: Request, name: Name, _: Annotated[Principal, Depends(READ)]
) -> dict[str, Any]:
    """The pipeline's cursors per stream, with the saved live cursor during a backfill."""
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    return page("cursors", queries.list_cursors(ctx.store, name), None)


@router.post(
    "/pipelines/{name}/cursors/reset",
    response_model=CursorResetOut,
    responses={**_404, **_409},
)
def reset_cursor(
    request: Request,
    name: Name,
    body: CursorResetRequest,
    _: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Move a stream's cursor back (or to any point) for a backfill; the pipeline must be paused.

    The live cursor is saved first (once per backfill) and ``cursors/restore`` puts it back.
    Records read again are not stored twice: ids are stable and inserts skip duplicates.
    """
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    _require_paused(ctx, name)

    def audit(conn: Connection) -> None:
        detail = {"stream": body.stream, "value": body.value, "reason": body.reason}
        audit_action(request, "cursor.reset", name, detail, conn=conn)

    out = operations.reset_cursor(ctx.store, name, body.stream, body.value, audit=audit)
    return {"stream": body.stream, "value": body.value, **out}


@router.post(
    "/pipelines/{name}/cursors/restore",
    response_model=CursorRestoreOut,
    responses={404: problem("Unknown pipeline or no saved cursor."), **_409},
)
def restore_cursor(
    request: Request,
    name: Name,
    body: CursorRestoreRequest,
    _: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Put back the live cursor a reset saved (end or abandon a backfill)."""
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    _require_paused(ctx, name)

    def audit(conn: Connection) -> None:
        audit_action(request, "cursor.restore", name, {"stream": body.stream}, conn=conn)

    out = operations.restore_cursor(ctx.store, name, body.stream, audit=audit)
    if out is None:
        raise ApiProblem(
            404, "Not found", "this stream has no saved cursor", code="saved_cursor_not_found"
        )
    return {"stream": body.stream, **out}
