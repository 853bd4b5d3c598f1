"""Routes: deliveries (the outbox) with their attempts, and channels (list, disable, enable).

Delivery payloads carry the canonical record, so its personal fields are masked unless an admin
asks ``?reveal=true`` (audited).  Channel settings (URLs, secrets) are never returned.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.masking import check_reveal, mask_event
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import OPERATE, READ, Principal
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
from junction.store import queries

router = APIRouter(tags=["deliveries"])
Channel = Annotated[str, Path(max_length=128, description="Channel name, e.g. webhook.sales.")]
_404: Responses = {404: problem("Unknown channel.")}


@router.get(
    "/deliveries",
    response_model=Page[DeliveryOut],
    responses={404: problem("Unknown pipeline or channel."), **PAGED},
)
def list_deliveries(
    request: Request,
    _: Annotated[Principal, Depends(READ)],
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
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


def _channel(name: str, state: dict[str, Any] | None, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": name.split(".", 1)[0],
        "disabled": bool(state and state["disabled"]),
        "reason": state["reason"] if state else None,
        "updated_at": state["updated_at"] if state else None,
        "deliveries": counts,
    }


@router.get("/channels", response_model=Page[ChannelOut], tags=["channels"])
def list_channels(request: Request, _: Annotated[Principal, Depends(READ)]) -> dict[str, Any]:
    """Configured channels, whether each is disabled (and why), and deliveries by status."""
    ctx = ctx_of(request)
    states = queries.endpoint_states(ctx.store)
    counts = queries.channel_counts(ctx.store)
    items = [_channel(n, states.get(n), counts.get(n, {})) for n in sorted(ctx.cfg.channels)]
    return page("channels", items, None)


def _set_channel(request: Request, name: str, disabled: bool, reason: str | None) -> dict[str, Any]:
    _require_channel(request, name)
    ctx = ctx_of(request)
    ctx.store.set_endpoint(name, disabled=disabled, reason=reason)
    action = "channel.disable" if disabled else "channel.enable"
    audit_action(request, action, name, {"reason": reason} if reason else None)
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
