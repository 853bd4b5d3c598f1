"""Routes: ``POST /outcomes``, what became of scored records (labels for A/B reports, training).

Each item names a record (its ``record_id``, or its pipeline and ``source_key``), the outcome
``kind`` (``converted``, ``won``...), the ``label`` (1 it happened, 0 it did not) and when the
source system observed it.  Outcomes are stored per lead (``junction.store.outcomes``): the
newest observation per record and kind wins, so a retry or an older report cannot undo a newer
one.  Needs OPERATE; audited as ``outcomes.record`` with the item count (no record ids).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.policy import OPERATE, Principal
from junction.api.problems import ApiProblem
from junction.store.outcomes import OutcomeIn, record_outcomes

router = APIRouter(tags=["outcomes"])
MAX_ITEMS = 1000


class OutcomeItem(BaseModel):
    """One outcome of one record."""

    model_config = ConfigDict(extra="forbid")

    record_id: str | None = Field(
        None, min_length=1, max_length=512, description="The record's id, e.g. leads:00Q1."
    )
    pipeline: str | None = Field(
        None, min_length=1, max_length=128, description="With source_key: the record's pipeline."
    )
    source_key: str | None = Field(
        None, min_length=1, max_length=256, description="The record's id in its source system."
    )
    kind: str = Field(
        "converted",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="What happened: converted, won...",
    )
    label: Literal[0, 1] = Field(..., description="1: the outcome happened; 0: it did not.")
    observed_at: datetime = Field(
        ..., description="When the source system observed it (ISO 8601 with a zone)."
    )

    @field_validator("record_id", "pipeline", "source_key")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("ids must be printable text")
        return value

    @model_validator(mode="after")
    def _names_a_record(self) -> OutcomeItem:
        if self.record_id is None and (self.pipeline is None or self.source_key is None):
            raise ValueError("give record_id, or pipeline and source_key")
        return self


class OutcomesOut(BaseModel):
    """How many outcomes were recorded."""

    received: int = Field(..., description="Items in the request.")
    recorded: int = Field(
        ..., description="Distinct (record, kind) pairs written (the newest observation wins)."
    )


def _items(body: list[OutcomeItem]) -> list[OutcomeIn]:
    out = []
    for item in body:
        when = item.observed_at
        if when.tzinfo is None:
            raise ApiProblem(
                422, "Invalid time", "observed_at needs a time zone", code="invalid_time"
            )
        out.append(
            OutcomeIn(
                kind=item.kind,
                label=item.label,
                observed_at=when.timestamp(),
                record_id=item.record_id,
                pipeline=item.pipeline,
                source_key=item.source_key,
            )
        )
    return out


@router.post("/outcomes", response_model=OutcomesOut)
async def post_outcomes(
    request: Request,
    body: Annotated[
        list[OutcomeItem],
        Body(min_length=1, max_length=MAX_ITEMS, description="The outcomes (1 to 1,000)."),
    ],
    principal: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Record outcomes of scored records (labels for A/B reports and training)."""
    ctx = ctx_of(request)
    items = _items(body)
    source = f"api:{principal.client_id}"[:64]

    def audit(conn: Connection) -> None:  # in the import's transaction
        audit_action(request, "outcomes.record", "outcomes", {"items": len(items)}, conn=conn)

    recorded = await run_in_threadpool(
        record_outcomes, ctx.store, items, source=source, audit=audit
    )
    return {"received": len(items), "recorded": recorded}
