"""Routes: the audit log (read, filter, page) and its hash-chain check; admins only.

The router's lifespan flushes the audit buffer when the app shuts down, so including this router
is all an app needs to lose no buffered decision on a graceful stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from junction.api.audit import audit_log_of, close_audit
from junction.api.context import ctx_of
from junction.api.policy import ADMIN, Principal
from junction.store.audit import AuditRecord


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    ctx = getattr(app.state, "ctx", None)
    if ctx is not None:
        await close_audit(ctx)


router = APIRouter(tags=["audit"], lifespan=_lifespan)
_TEXT = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it as input (422), not 500


class AuditEntryPublic(BaseModel):
    """One audit entry; personal data in ``detail`` appears only as pseudonyms."""

    id: int
    at: float = Field(description="Epoch seconds (UTC).")
    actor: str = Field(description="Client id, `cli:<user>`, `pipeline:<name>` or `system`.")
    action: str
    target: str
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str | None
    hash: str


class AuditPage(BaseModel):
    """Entries newest first; pass ``next_before_id`` as ``before_id`` for the next page."""

    items: list[AuditEntryPublic]
    next_before_id: int | None


class AuditVerification(BaseModel):
    """The result of re-computing the hash chain."""

    ok: bool
    first_broken_id: int | None = Field(description="The first row whose link or hash is wrong.")
    entries: int
    head_hash: str | None = Field(description="Keep a copy elsewhere to detect truncation.")


def _public(r: AuditRecord) -> AuditEntryPublic:
    return AuditEntryPublic(**r.__dict__)


@router.get("/audit", response_model=AuditPage)
def list_audit(
    request: Request,
    _: Annotated[Principal, Depends(ADMIN)],
    action: Annotated[
        str | None,
        Query(max_length=64, pattern=_TEXT, description="An action, or a family: `client.*`."),
    ] = None,
    actor: Annotated[str | None, Query(max_length=128, pattern=_TEXT)] = None,
    target: Annotated[str | None, Query(max_length=600, pattern=_TEXT)] = None,
    since: Annotated[float | None, Query(description="From this epoch time (inclusive).")] = None,
    until: Annotated[float | None, Query(description="Before this epoch time.")] = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Page: ids below this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Audit entries, newest first, filtered by action, actor, target and time."""
    rows = audit_log_of(ctx_of(request)).query(
        action=action,
        actor=actor,
        target=target,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit,
    )
    nxt = rows[-1].id if len(rows) == limit and rows[-1].id > 1 else None
    return AuditPage(items=[_public(r) for r in rows], next_before_id=nxt)


@router.get("/audit/verify", response_model=AuditVerification)
def verify_audit(request: Request, _: Annotated[Principal, Depends(ADMIN)]) -> AuditVerification:
    """Re-compute the hash chain; name the first entry that was altered, removed or reordered."""
    result = audit_log_of(ctx_of(request)).check()
    return AuditVerification(
        ok=result.first_broken_id is None,
        first_broken_id=result.first_broken_id,
        entries=result.entries,
        head_hash=result.head_hash,
    )
