"""Routes: the quarantine (dead letters): list, show, replay, discard.

Quarantined bytes are raw source data nobody has classified, so every value in them is masked
unless an admin asks ``?reveal=true`` (audited).  Replaying needs OPERATE; discarding gives a
record up for good, so it needs ADMIN and a reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import Connection

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.masking import check_reveal, raw_payload
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import ADMIN, OPERATE, READ, Principal
from junction.api.problems import ApiProblem
from junction.api.runtime import require_pipeline, run_lock
from junction.api.schemas import (
    DiscardOut,
    Page,
    QuarantineDetail,
    QuarantineOut,
    ReasonRequest,
    ReplayOut,
    Responses,
    problem,
)
from junction.pipeline.replay import replay
from junction.store import operations, queries

router = APIRouter(tags=["quarantine"])
QId = Annotated[int, Path(ge=1, le=2**62, description="Quarantine entry id.")]
_404: Responses = {404: problem("Unknown entry.")}
_409: Responses = {409: problem("The entry is not open.")}


def _entry(request: Request, qid: int) -> dict[str, Any]:
    q = ctx_of(request).store.get_quarantine(qid)
    if q is None:
        raise ApiProblem(404, "Not found", "no such quarantine entry", code="quarantine_not_found")
    if q["status"] != "open":
        raise ApiProblem(
            409,
            "Not open",
            f"the entry is already {q['status']}",
            code="quarantine_not_open",
        )
    return q


@router.get("/quarantine", response_model=Page[QuarantineOut], responses={**_404, **PAGED})
def list_quarantine(
    request: Request,
    _: Annotated[Principal, Depends(READ)],
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str, Query(pattern="^(open|replayed|discarded|any)$")] = "open",
    stage: Annotated[str | None, Query(max_length=16)] = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Quarantine entries, newest first (``status=any`` for every status)."""
    ctx = ctx_of(request)
    if pipeline is not None:
        require_pipeline(ctx, pipeline)
    after = decode_cursor("quarantine", cursor, int)
    rows, nxt = queries.list_quarantine(
        ctx.store,
        pipeline=pipeline,
        status=None if status == "any" else status,
        stage=stage,
        code=code,
        limit=limit,
        after=after,
    )
    return page("quarantine", rows, nxt)


@router.get(
    "/quarantine/{qid}",
    response_model=QuarantineDetail,
    responses={**_404, 403: problem("Only an admin may reveal.")},
)
def show_quarantine(
    request: Request,
    qid: QId,
    principal: Annotated[Principal, Depends(READ)],
    reveal: Annotated[bool, Query(description="Show the original values (admin only).")] = False,
) -> dict[str, Any]:
    """One entry with its original bytes: values masked unless an admin reveals them."""
    reveal = check_reveal(principal, reveal)
    found = queries.quarantine_detail(ctx_of(request).store, qid)
    if found is None:
        raise ApiProblem(404, "Not found", "no such quarantine entry", code="quarantine_not_found")
    out, payload = found
    if reveal:
        audit_action(request, "quarantine.reveal", str(qid))
    out["payload"] = raw_payload(payload, reveal=reveal)
    out["revealed"] = reveal
    return out


@router.post("/quarantine/{qid}/replay", response_model=ReplayOut, responses={**_404, **_409})
def replay_quarantine(
    request: Request, qid: QId, _: Annotated[Principal, Depends(OPERATE)]
) -> dict[str, Any]:
    """Run the entry through its pipeline again (or re-queue a dead delivery).

    A record that fails again gets a new open entry; this one is closed as replayed.
    """
    ctx = ctx_of(request)
    q = _entry(request, qid)
    if q["pipeline"] not in ctx.cfg.pipelines:
        raise ApiProblem(
            409, "Pipeline gone", "the entry's pipeline is no longer configured", code="no_pipeline"
        )
    with run_lock(ctx, q["pipeline"]):
        outcome = replay(ctx.hub, qid)
    after = ctx.store.get_quarantine(qid)
    status = after["status"] if after is not None else "unknown"
    audit_action(request, "quarantine.replay", str(qid), {"outcome": outcome})
    return {"id": qid, "outcome": outcome, "status": status}


@router.post("/quarantine/{qid}/discard", response_model=DiscardOut, responses={**_404, **_409})
def discard_quarantine(
    request: Request,
    qid: QId,
    body: ReasonRequest,
    principal: Annotated[Principal, Depends(ADMIN)],
) -> dict[str, Any]:
    """Give the entry up for good, with a reason; its bytes are kept for the record."""
    ctx = ctx_of(request)
    _entry(request, qid)

    def audit(conn: Connection) -> None:
        audit_action(request, "quarantine.discard", str(qid), {"reason": body.reason}, conn=conn)

    if not operations.discard_quarantine(
        ctx.store, qid, reason=body.reason, actor=principal.client_id, audit=audit
    ):
        raise ApiProblem(409, "Not open", "the entry is no longer open", code="quarantine_not_open")
    return {"id": qid, "status": "discarded", "reason": body.reason}
