"""Routes: the suppression list (addresses that bounced, complained or opted out).

The store keeps keyed pseudonyms, never addresses, so nothing here answers with an address:
``GET /suppressions?kind=&address=`` says whether one address is suppressed (and why), and
``GET /suppressions/entries`` pages through a kind's entries by pseudonym.  Adding needs OPERATE;
lifting lets the hub message someone who had opted out again, so it needs ADMIN.  Both are
audited with the pseudonym as the target.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection

from junction.api.audit import audit_action, audit_log_of
from junction.api.context import ctx_of
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import ADMIN, OPERATE, READ, Principal
from junction.api.problems import ApiProblem
from junction.api.schemas import Page, problem
from junction.core.errors import InternalError
from junction.core.pseudonym import Pseudonymizer
from junction.store.suppression_admin import list_suppressions
from junction.store.suppressions import SuppressionList

router = APIRouter(tags=["suppressions"])
Kind = Literal["email", "phone", "slack"]
MAX_ADDRESS = 320  # the longest email address RFC 5321 allows
Address = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_ADDRESS,
        description="The address as the channel sends to it (email, E.164 phone, Slack id).",
    ),
]


class SuppressionCreate(BaseModel):
    """An address to stop messaging."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(..., description="The address space.")
    address: str = Field(..., min_length=1, max_length=MAX_ADDRESS, description="The address.")
    reason: str = Field(
        "manual",
        min_length=1,
        max_length=64,
        description="Why: unsubscribe, complaint, bounce, legal, manual...",
    )

    @field_validator("address")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError("the address must be printable text")
        return value.strip()


class SuppressionOut(BaseModel):
    """One suppression entry, keyed by the address's pseudonym (never the address)."""

    kind: str
    address_key: str
    reason: str
    source: str
    created_at: float


class SuppressionStatus(BaseModel):
    """Whether one address is suppressed, and why."""

    kind: str
    address_key: str = Field(..., description="The address's keyed pseudonym.")
    suppressed: bool
    reason: str | None = None
    source: str | None = None
    created_at: float | None = None
    changed: bool | None = Field(
        None, description="On add and lift: whether this call changed the list."
    )


def _list(request: Request) -> SuppressionList:
    ctx = ctx_of(request)
    pseudonyms = audit_log_of(ctx).pseudonymizer
    if not isinstance(pseudonyms, Pseudonymizer):
        # audit_log_of always loads the key; without it no address could be looked up
        raise InternalError("the pseudonym key is not loaded")
    return SuppressionList(ctx.store, pseudonyms)


def _status(sl: SuppressionList, kind: str, address: str) -> dict[str, Any]:
    entry = sl.entry(kind, address)
    out: dict[str, Any] = {
        "kind": kind,
        "address_key": sl.key(kind, address),
        "suppressed": entry is not None,
    }
    if entry is not None:
        out.update(reason=entry["reason"], source=entry["source"], created_at=entry["created_at"])
    return out


def _valid(kind: str, address: str) -> str:
    address = address.strip()
    if not address or not address.isprintable():
        raise ApiProblem(
            422, "Invalid address", "the address must be printable", code="invalid_address"
        )
    if kind == "email" and "@" not in address:
        raise ApiProblem(
            422, "Invalid address", "an email address needs an @", code="invalid_address"
        )
    return address


@router.get("/suppressions", response_model=SuppressionStatus)
def check_suppression(
    request: Request,
    kind: Annotated[Kind, Query(description="The address space.")],
    address: Address,
    _: Annotated[Principal, Depends(READ)],
) -> dict[str, Any]:
    """Whether one address is suppressed (and why); the answer carries its pseudonym only."""
    return _status(_list(request), kind, _valid(kind, address))


@router.get("/suppressions/entries", response_model=Page[SuppressionOut], responses=PAGED)
def list_entries(
    request: Request,
    kind: Annotated[Kind, Query(description="The address space.")],
    _: Annotated[Principal, Depends(READ)],
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """A kind's entries by pseudonym, with reason, source and time (never addresses)."""
    after = decode_cursor(f"suppressions.{kind}", cursor, str)
    rows, nxt = list_suppressions(ctx_of(request).store, kind=kind, limit=limit, after=after)
    return page(f"suppressions.{kind}", rows, nxt)


@router.post("/suppressions", response_model=SuppressionStatus)
def add_suppression(
    request: Request,
    body: SuppressionCreate,
    principal: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Stop messaging an address (the first reason recorded stays)."""
    sl = _list(request)
    address = _valid(body.kind, body.address)
    target = f"{body.kind}:{sl.key(body.kind, address)}"

    def audit(conn: Connection, added: bool) -> None:  # in the change's transaction
        detail = {"reason": body.reason, "added": added}
        audit_action(request, "suppression.add", target, detail, conn=conn)

    source = f"api:{principal.client_id}"
    added = sl.add(body.kind, address, reason=body.reason, source=source, audit=audit)
    return {**_status(sl, body.kind, address), "changed": added}


@router.delete(
    "/suppressions/{kind}/{address}",
    response_model=SuppressionStatus,
    responses={404: problem("The address is not suppressed.")},
)
def lift_suppression(
    request: Request,
    kind: Annotated[Kind, Path(description="The address space.")],
    address: Annotated[str, Path(min_length=1, max_length=MAX_ADDRESS)],
    _: Annotated[Principal, Depends(ADMIN)],
    reason: Annotated[
        str | None, Query(max_length=500, description="Why (kept in the audit log).")
    ] = None,
) -> dict[str, Any]:
    """Message an address again (e.g. the person opted back in)."""
    sl = _list(request)
    address = _valid(kind, address)
    before = sl.entry(kind, address)
    key = sl.key(kind, address)

    def audit(conn: Connection) -> None:  # in the change's transaction
        assert before is not None
        detail = {"was": before["reason"], **({"reason": reason} if reason else {})}
        audit_action(request, "suppression.lift", f"{kind}:{key}", detail, conn=conn)

    if before is None or not sl.lift(kind, address, audit=audit):
        raise ApiProblem(
            404, "Not found", "the address is not suppressed", code="suppression_not_found"
        )
    return {"kind": kind, "address_key": key, "suppressed": False, "changed": True}
