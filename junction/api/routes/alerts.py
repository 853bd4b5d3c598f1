"""Routes: alerts: acknowledge a delivered alert so its escalation chain stops.

A delivery of a route with ``escalate`` goes to the route's next channel when nobody
acknowledges it within ``escalate.after_s``.  Acknowledging any delivery of the chain (the alert
or one of its escalations) stops it.  Needs OPERATE; audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from sqlalchemy import Connection

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.policy import OPERATE, Principal
from junction.api.problems import ApiProblem
from junction.api.schemas import problem
from junction.pipeline.hygiene_sweeps import acknowledge

router = APIRouter(tags=["deliveries"])


class AckOut(BaseModel):
    """An acknowledged alert."""

    id: str
    status: str
    ack_at: float
    group_id: str | None = None


@router.post(
    "/deliveries/{delivery_id:path}/ack",
    response_model=AckOut,
    responses={
        404: problem("Unknown delivery."),
        409: problem("The alert was acknowledged before."),
    },
)
def ack_delivery(
    request: Request,
    delivery_id: Annotated[str, Path(max_length=600, description="The delivery's id.")],
    _: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Acknowledge an alert: it (and the chain it belongs to) escalates no further."""

    def audit(conn: Connection) -> None:  # in the acknowledgement's transaction
        audit_action(request, "delivery.ack", delivery_id, conn=conn)

    row, acked = acknowledge(ctx_of(request).store, delivery_id, audit=audit)
    if row is None:
        raise ApiProblem(404, "Not found", "no such delivery", code="delivery_not_found")
    if not acked:
        raise ApiProblem(
            409, "Already acknowledged", "the alert was acknowledged before", code="already_acked"
        )
    return row
