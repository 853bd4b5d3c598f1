"""Routes: deliveries (the outbox): list, show, replay; channels: list, disable, enable, rotate.

Delivery payloads carry the canonical record, so its personal fields are masked unless an admin
asks ``?reveal=true`` (audited).  Channel settings (URLs, secrets) are never returned.  Replaying
(one delivery, or every match of a filter) needs OPERATE and is audited in the replay's own
transaction (``junction.store.outbox_admin``).  Rotating a webhook channel's signing secret is
for admins: the answer carries the new secret once (``no-store``); the audit entry names the
secret's id, never the secret (``junction.store.channel_secrets``, ADR-0023).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.masking import check_reveal, mask_event
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import ADMIN, OPERATE, READ, Principal
from junction.api.problems import ApiProblem
from junction.api.runtime import require_pipeline
from junction.api.schemas import (
    ChannelOut,
    DeliveryDetail,
    DeliveryOut,
    Page,
    ReasonRequest,
    Responses,
    problem,
)
from junction.core.errors import ConfigError
from junction.store import queries
from junction.store.channel_secrets import (
    DEFAULT_OVERLAP_S,
    MAX_OVERLAP_S,
    RotatedSecret,
    rotate_secret,
    signing_secrets,
    webhook_options,
)
from junction.store.outbox_admin import (
    DEFAULT_LIMIT,
    REPLAYABLE,
    ReplayAudit,
    delivery_status,
    replay_deliveries,
)
from junction.store.repo import Store

router = APIRouter(tags=["deliveries"])
Channel = Annotated[str, Path(max_length=128, description="Channel name, e.g. webhook.sales.")]
_404: Responses = {404: problem("Unknown channel.")}
STATUSES = "pending|delivered|dead|suppressed|skipped|held|digested"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# the most ids an audit entry lists (the count is always there)
AUDIT_IDS = 50


class BulkReplayRequest(BaseModel):
    """Which deliveries to put back in the queue (every filter given must match)."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(None, max_length=128, description="Only this channel.")
    status: Literal["dead", "suppressed", "skipped"] = Field(
        "dead", description="Replay deliveries in this status."
    )
    since: AwareDatetime | None = Field(None, description="Only deliveries created at or after.")
    until: AwareDatetime | None = Field(None, description="Only deliveries created before.")
    limit: int = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=10_000,
        description="At most this many, oldest first; call again for the rest.",
    )


class BulkReplayOut(BaseModel):
    """How many deliveries a bulk replay re-queued."""

    replayed: int


class DeliveryReplayOut(BaseModel):
    """A replayed delivery: back in the queue, due now."""

    id: str
    previous_status: str
    status: str


def _epoch(when: datetime | None) -> float | None:
    return None if when is None else (when - EPOCH).total_seconds()


def _audit_replay(
    request: Request, action: str, target: str, detail: dict[str, Any]
) -> ReplayAudit:
    def audit(conn: Connection, ids: list[str]) -> None:
        more = {"replayed": len(ids), "ids": ids[:AUDIT_IDS]}
        audit_action(request, action, target, {**detail, **more}, conn=conn)

    return audit


@router.post(
    "/deliveries/replay",
    response_model=BulkReplayOut,
    responses={404: problem("Unknown channel.")},
)
def replay_matching(
    request: Request, body: BulkReplayRequest, _: Annotated[Principal, Depends(OPERATE)]
) -> dict[str, Any]:
    """Put every matching dead (or suppressed, or skipped) delivery back in the queue.

    Each keeps its id, so receivers dedupe a message they already have; its open dead-letter
    entry is closed as replayed.  Answers how many were re-queued (at most ``limit``).
    """
    ctx = ctx_of(request)
    if body.channel is not None:
        _require_channel(request, body.channel)
    filters = body.model_dump(mode="json")
    n = replay_deliveries(
        ctx.store,
        channel=body.channel,
        status=body.status,
        since=_epoch(body.since),
        until=_epoch(body.until),
        limit=body.limit,
        audit=_audit_replay(request, "delivery.replay_bulk", body.channel or "*", filters),
    )
    return {"replayed": n}


@router.post(
    "/deliveries/{delivery_id:path}/replay",
    response_model=DeliveryReplayOut,
    responses={
        404: problem("Unknown delivery."),
        409: problem("The delivery is not dead, suppressed or skipped."),
    },
)
def replay_one(
    request: Request,
    delivery_id: Annotated[str, Path(max_length=600)],
    _: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Put one dead (or suppressed, or skipped) delivery back in the queue, with the same id."""
    store = ctx_of(request).store
    before = delivery_status(store, delivery_id)
    if before is None:
        raise ApiProblem(404, "Not found", "no such delivery", code="delivery_not_found")
    audit = _audit_replay(request, "delivery.replay", delivery_id, {"previous_status": before})
    if before not in REPLAYABLE or not replay_deliveries(
        store, ids=[delivery_id], status=before, limit=1, audit=audit
    ):
        raise ApiProblem(
            409,
            "Not replayable",
            f"the delivery is {before}; only {', '.join(REPLAYABLE)} deliveries are replayed",
            code="delivery_not_replayable",
        )
    return {"id": delivery_id, "previous_status": before, "status": "pending"}


@router.get(
    "/deliveries",
    response_model=Page[DeliveryOut],
    responses={404: problem("Unknown pipeline or channel."), **PAGED},
)
def list_deliveries(
    request: Request,
    _: Annotated[Principal, Depends(READ)],
    status: Annotated[str | None, Query(pattern=f"^({STATUSES})$")] = None,
    channel: Annotated[str | None, Query(max_length=128)] = None,
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Deliveries in id order (no payloads), by status, channel or pipeline."""
    ctx = ctx_of(request)
    if pipeline is not None:
        require_pipeline(ctx, pipeline)
    if channel is not None:
        _require_channel(request, channel)
    after = decode_cursor("deliveries", cursor, str)
    rows, nxt = queries.list_deliveries(
        ctx.store, status=status, channel=channel, pipeline=pipeline, limit=limit, after=after
    )
    return page("deliveries", rows, nxt)


@router.get(
    "/deliveries/{delivery_id:path}",
    response_model=DeliveryDetail,
    responses={
        403: problem("Only an admin may reveal personal data."),
        404: problem("Unknown delivery."),
    },
)
def show_delivery(
    request: Request,
    delivery_id: Annotated[str, Path(max_length=600)],
    principal: Annotated[Principal, Depends(READ)],
    reveal: Annotated[bool, Query(description="Show personal values (admin only).")] = False,
) -> dict[str, Any]:
    """One delivery with its payload (personal fields masked) and every attempt."""
    reveal = check_reveal(principal, reveal)
    out = queries.delivery_detail(ctx_of(request).store, delivery_id)
    if out is None:
        raise ApiProblem(404, "Not found", "no such delivery", code="delivery_not_found")
    if reveal:
        audit_action(request, "delivery.reveal", delivery_id)
    else:
        out["payload"] = mask_event(out["payload"])
    out["revealed"] = reveal
    return out


def _require_channel(request: Request, name: str) -> None:
    if name not in ctx_of(request).cfg.channels:
        raise ApiProblem(404, "Not found", "no such channel", code="channel_not_found")


def _channel(
    name: str,
    state: dict[str, Any] | None,
    counts: dict[str, int],
    signing: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": name.split(".", 1)[0],
        "disabled": bool(state and state["disabled"]),
        "reason": state["reason"] if state else None,
        "updated_at": state["updated_at"] if state else None,
        "deliveries": counts,
        "signing_secrets": signing or [],
    }


def _signing_secrets(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Per channel, the rotated secrets that still sign (ids and times only), current first."""
    return {
        channel: [
            {"id": s.id, "origin": s.origin, "created_at": s.created_at, "retires_at": s.retires_at}
            for s in found
        ]
        for channel, found in signing_secrets(store).items()
    }


@router.get("/channels", response_model=Page[ChannelOut], tags=["channels"])
def list_channels(request: Request, _: Annotated[Principal, Depends(READ)]) -> dict[str, Any]:
    """Configured channels, whether each is disabled (and why), deliveries by status, and the
    rotated signing secrets still in use (ids and times, never the secrets)."""
    ctx = ctx_of(request)
    states = queries.endpoint_states(ctx.store)
    counts = queries.channel_counts(ctx.store)
    signing = _signing_secrets(ctx.store)
    items = [
        _channel(n, states.get(n), counts.get(n, {}), signing.get(n))
        for n in sorted(ctx.cfg.channels)
    ]
    return page("channels", items, None)


def _set_channel(request: Request, name: str, disabled: bool, reason: str | None) -> dict[str, Any]:
    _require_channel(request, name)
    ctx = ctx_of(request)
    action = "channel.disable" if disabled else "channel.enable"

    def audit(conn: Connection) -> None:  # in the change's transaction
        audit_action(request, action, name, {"reason": reason} if reason else None, conn=conn)

    ctx.store.set_endpoint(name, disabled=disabled, reason=reason, audit=audit)
    state = queries.endpoint_states(ctx.store).get(name)
    return _channel(name, state, queries.channel_counts(ctx.store).get(name, {}))


@router.post(
    "/channels/{name}/disable", response_model=ChannelOut, responses=_404, tags=["channels"]
)
def disable_channel(
    request: Request,
    name: Channel,
    body: ReasonRequest,
    _: Annotated[Principal, Depends(OPERATE)],
) -> dict[str, Any]:
    """Stop sending to a channel; its deliveries wait in the outbox until it is enabled."""
    return _set_channel(request, name, True, body.reason)


@router.post(
    "/channels/{name}/enable", response_model=ChannelOut, responses=_404, tags=["channels"]
)
def enable_channel(
    request: Request, name: Channel, _: Annotated[Principal, Depends(OPERATE)]
) -> dict[str, Any]:
    """Send to a channel again; waiting deliveries go out at once."""
    return _set_channel(request, name, False, None)


class RotateSecretRequest(BaseModel):
    """How long the secrets in use keep signing beside the new one."""

    model_config = ConfigDict(extra="forbid")

    overlap_s: float = Field(
        DEFAULT_OVERLAP_S,
        ge=0,
        le=MAX_OVERLAP_S,
        description="Seconds the current secret (and any still overlapping) keeps signing beside "
        "the new one, so receivers can switch at their pace; 0 stops them at once.",
    )


class RetiringSecretOut(BaseModel):
    """A secret rotated out: it signs beside the new one until ``retires_at``."""

    id: str
    origin: str = Field(description="rotated, or config (the config's secret it replaced).")
    retires_at: float


class RotatedSecretOut(BaseModel):
    """A new signing secret: shown in this answer only, never again."""

    channel: str
    secret_id: str = Field(description="Names the secret in the audit log and listings.")
    secret: str = Field(description="The new whsec_ secret. Store it now: it is not shown again.")
    created_at: float
    overlap_s: float
    retiring: list[RetiringSecretOut]


_ROTATE_ERRORS: Responses = {
    404: problem("Unknown channel."),
    409: problem("Not a signing channel, or the store's encryption at rest is off."),
}


@router.post(
    "/channels/{name}/rotate-secret",
    response_model=RotatedSecretOut,
    responses=_ROTATE_ERRORS,
    tags=["channels"],
)
def rotate_channel_secret(
    request: Request,
    response: Response,
    name: Channel,
    _: Annotated[Principal, Depends(ADMIN)],
    body: RotateSecretRequest | None = None,
) -> dict[str, Any]:
    """Give a webhook channel a new signing secret (admin); the old one signs until overlap ends.

    During the overlap every delivery carries a ``v1`` signature per active secret, so a receiver
    holding either secret verifies.  The new secret is in this answer only; the audit entry
    records its id.  Needs the store's encryption at rest (secrets are sealed).
    """
    _require_channel(request, name)
    ctx = ctx_of(request)
    overlap_s = (body or RotateSecretRequest()).overlap_s

    def audit(conn: Connection, out: RotatedSecret) -> None:
        detail = {
            "secret_id": out.secret_id,
            "overlap_s": out.overlap_s,
            "retiring": [sid for sid, _origin, _at in out.retiring],
        }
        audit_action(request, "channel.rotate_secret", name, detail, conn=conn)

    try:
        config = webhook_options(ctx.cfg.channels, name)
        out = rotate_secret(ctx.store, name, config, overlap_s=overlap_s, audit=audit)
    except ConfigError as exc:
        if exc.code not in ("channel_not_signed", "encryption_required"):
            raise
        raise ApiProblem(409, "Cannot rotate", exc.user_message, code=exc.code) from None
    response.headers["Cache-Control"] = "no-store"
    return out.answer()
