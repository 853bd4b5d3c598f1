"""Routes: stored records, by pipeline (paged) and one by one with their scores and deliveries.

Personal fields of a record (``x-pii`` in its schema) are masked unless an admin asks
``?reveal=true``; a reveal is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.masking import check_reveal, mask_entity
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import READ, Principal
from junction.api.problems import ApiProblem
from junction.api.runtime import require_pipeline
from junction.api.schemas import Page, RecordDetail, RecordOut, problem
from junction.store import queries

router = APIRouter(tags=["records"])
RevealQuery = Annotated[
    bool, Query(description="Show personal values (admin only; the reveal is audited).")
]


@router.get(
    "/pipelines/{name}/records",
    response_model=Page[RecordOut],
    responses={404: problem("Unknown pipeline."), **PAGED},
)
def list_records(
    request: Request,
    name: Annotated[str, Path(max_length=64)],
    _: Annotated[Principal, Depends(READ)],
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """A pipeline's records in id order (no payloads), each with its newest score."""
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    after = decode_cursor(f"records:{name}", cursor, str)
    rows, nxt = queries.list_records(ctx.store, name, limit=limit, after=after)
    scores = queries.latest_scores(ctx.store, [r["id"] for r in rows])
    for r in rows:
        r["score"] = scores.get(r["id"])
    return page(f"records:{name}", rows, nxt)


@router.get(
    "/pipelines/{name}/records/{record_id:path}",
    response_model=RecordDetail,
    responses={
        403: problem("Only an admin may reveal personal data."),
        404: problem("Unknown pipeline or record."),
    },
)
def show_record(
    request: Request,
    name: Annotated[str, Path(max_length=64)],
    record_id: Annotated[str, Path(max_length=512)],
    principal: Annotated[Principal, Depends(READ)],
    reveal: RevealQuery = False,
) -> dict[str, Any]:
    """One record with its payload (personal fields masked), scores and deliveries."""
    reveal = check_reveal(principal, reveal)
    ctx = ctx_of(request)
    require_pipeline(ctx, name)
    out = queries.record_detail(ctx.store, record_id)
    if out is None or out["pipeline"] != name:
        raise ApiProblem(404, "Not found", "no such record", code="record_not_found")
    if reveal:
        audit_action(request, "record.reveal", record_id)
    else:
        out["payload"] = mask_entity(out["entity"], out["payload"])
    out["revealed"] = reveal
    return out
