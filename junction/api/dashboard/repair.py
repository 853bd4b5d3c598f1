"""Dashboard pages: the quarantine (grouped, masked, replay, bulk replay, discard), deliveries
and channels (attempts, response codes, replay, disable and enable, rotate a signing secret).

Reads and actions go through the JSON API's route functions: the same masking, the same checks,
the same audit entries.  Replay needs OPERATE, discard and secret rotation ADMIN, as in the API;
a viewer sees no forms, and a form posted anyway is refused with 403 by the policy.  A rotated
secret is shown once, in the answer to the form (``no-store``), never through a flash cookie.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from junction.api.context import ctx_of
from junction.api.dashboard import aggregates, counts
from junction.api.dashboard.session import UI_ADMIN, UI_OPERATE, UI_READ
from junction.api.dashboard.views import flash_back
from junction.api.dashboard.web import PREFIX, DashboardRoute, render
from junction.api.policy import Principal
from junction.api.problems import ApiProblem
from junction.api.routes import outbox, quarantine
from junction.api.schemas import ReasonRequest
from junction.store import queries
from junction.store.channel_secrets import parse_overlap, signing_secrets

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
QId = Annotated[int, Path(ge=1, le=2**62)]
BULK_MAX = 500
STATUSES = ("pending", "delivered", "dead", "suppressed", "skipped", "held", "digested")


@router.get("/quarantine")
def quarantine_page(
    request: Request,
    principal: Annotated[Principal, Depends(UI_READ)],
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    stage: Annotated[str | None, Query(max_length=16)] = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str, Query(pattern="^(open|replayed|discarded|any)$")] = "open",
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """Open entries grouped by error, and the entries of the chosen group."""
    groups = aggregates.quarantine_groups(ctx_of(request).store)
    listing = quarantine.list_quarantine(
        request, principal, pipeline or None, status, stage or None, code or None, 100, cursor
    )
    return render(
        request,
        "quarantine.html",
        {
            "groups": groups,
            "entries": listing["items"],
            "next": listing["next"],
            "filters": {"pipeline": pipeline, "stage": stage, "code": code, "status": status},
        },
    )


@router.get("/quarantine/{qid}")
def quarantine_entry(
    request: Request, qid: QId, principal: Annotated[Principal, Depends(UI_READ)]
) -> Response:
    """One entry: error, context, provenance and the original payload (masked)."""
    entry = quarantine.show_quarantine(request, qid, principal, False)
    return render(request, "quarantine_entry.html", {"q": entry})


@router.post("/quarantine/{qid}/replay")
def replay_one(
    request: Request, qid: QId, principal: Annotated[Principal, Depends(UI_OPERATE)]
) -> Response:
    """Replay one entry through its pipeline."""
    out = quarantine.replay_quarantine(request, qid, principal)
    kind = "ok" if out["outcome"] in ("record stored", "delivery re-queued") else "warn"
    return flash_back(request, f"{PREFIX}/quarantine/{qid}", kind, f"Replay: {out['outcome']}.")


@router.post("/quarantine/replay")
def replay_many(
    request: Request,
    principal: Annotated[Principal, Depends(UI_OPERATE)],
    ids: Annotated[list[int] | None, Form()] = None,
    pipeline: Annotated[str, Form(max_length=64)] = "",
    stage: Annotated[str, Form(max_length=16)] = "",
    code: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Replay the ticked entries, or every open entry of one error group (at most 500)."""
    chosen = [i for i in (ids or []) if 1 <= i <= 2**62][:BULK_MAX]
    if not chosen and code:
        found = quarantine.list_quarantine(
            request, principal, pipeline or None, "open", stage or None, code, BULK_MAX, None
        )
        chosen = [e["id"] for e in found["items"]]
    if not chosen:
        return flash_back(request, f"{PREFIX}/quarantine", "warn", "Nothing was selected.")
    outcomes: dict[str, int] = {}
    for qid in chosen:
        try:
            outcome = quarantine.replay_quarantine(request, qid, principal)["outcome"]
        except ApiProblem as exc:
            outcome = exc.detail or exc.title
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    summary = "; ".join(f"{n}: {what}" for what, n in sorted(outcomes.items()))
    return flash_back(request, f"{PREFIX}/quarantine", "ok", f"Replayed {len(chosen)}: {summary}.")


def _reason(text: str, why: str) -> ReasonRequest:
    """The form's reason as the API's request body; an empty one is a 422 saying ``why``."""
    try:
        return ReasonRequest(reason=text.strip())
    except ValidationError:
        raise ApiProblem(422, "Reason required", why, code="reason_required") from None


@router.post("/quarantine/{qid}/discard")
def discard(
    request: Request,
    qid: QId,
    principal: Annotated[Principal, Depends(UI_ADMIN)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Give an entry up for good, with a reason (admin)."""
    body = _reason(reason, "say why the entry is discarded")
    quarantine.discard_quarantine(request, qid, body, principal)
    return flash_back(request, f"{PREFIX}/quarantine/{qid}", "ok", "Entry discarded.")


# deliveries and channels


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    principal: Annotated[Principal, Depends(UI_READ)],
    status: Annotated[str, Query(max_length=16)] = "",
    channel: Annotated[str, Query(max_length=128)] = "",
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """Channels (state, deliveries by status) and deliveries (attempts, last response code)."""
    if status and status not in STATUSES:
        raise ApiProblem(400, "Unknown status", "choose a listed status", code="bad_status")
    channels = _channels(request)
    listing = outbox.list_deliveries(
        request, principal, status or None, channel or None, None, 100, cursor
    )
    return render(
        request,
        "deliveries.html",
        {
            "channels": channels,
            "deliveries": listing["items"],
            "next": listing["next"],
            "status": status,
            "channel": channel,
            "statuses": STATUSES,
            "signing": _signing(request),
        },
    )


def _signing(request: Request) -> dict[str, dict[str, Any]]:
    """Per rotated channel: when its current secret was made, and until when older ones sign."""
    out: dict[str, dict[str, Any]] = {}
    for channel, found in signing_secrets(ctx_of(request).store).items():
        current = [s.created_at for s in found if s.retires_at is None]
        overlap = [s.retires_at for s in found if s.retires_at is not None]
        out[channel] = {
            "rotated_at": current[0] if current else None,
            "overlap_until": max(overlap) if overlap else None,
        }
    return out


def _channels(request: Request) -> list[dict[str, Any]]:
    """``outbox.list_channels``' items, with counts bounded on a large store (``counts``)."""
    ctx = ctx_of(request)
    names = sorted(ctx.cfg.channels)
    states = queries.endpoint_states(ctx.store)
    by_channel = counts.channel_counts(ctx.store, names)
    items = []
    for name in names:
        found = by_channel.get(name, counts.Totals())
        state = states.get(name)
        items.append(
            {
                "name": name,
                "kind": name.split(".", 1)[0],
                "disabled": bool(state and state["disabled"]),
                "reason": state["reason"] if state else None,
                "updated_at": state["updated_at"] if state else None,
                "deliveries": found.values,
                "approx": found.approx,
            }
        )
    return items


@router.get("/delivery")
def delivery_page(
    request: Request,
    principal: Annotated[Principal, Depends(UI_READ)],
    id: Annotated[str, Query(max_length=600)],
) -> Response:
    """One delivery: payload (masked) and every attempt with its response code."""
    d: dict[str, Any] = outbox.show_delivery(request, id, principal, False)
    return render(request, "delivery.html", {"d": d})


@router.post("/delivery/replay")
def delivery_replay(
    request: Request,
    principal: Annotated[Principal, Depends(UI_OPERATE)],
    id: Annotated[str, Form(max_length=600)],
) -> Response:
    """Put a dead (or suppressed, or skipped) delivery back in the queue."""
    out = outbox.replay_one(request, id, principal)
    back = f"{PREFIX}/delivery?id={quote(id, safe='')}"
    return flash_back(request, back, "ok", f"Re-queued (was {out['previous_status']}).")


@router.post("/channels/{name}/disable")
def channel_disable(
    request: Request,
    name: Annotated[str, Path(max_length=128)],
    principal: Annotated[Principal, Depends(UI_OPERATE)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Stop sending to a channel (with a reason)."""
    body = _reason(reason, "say why the channel is disabled")
    outbox.disable_channel(request, name, body, principal)
    return flash_back(request, f"{PREFIX}/deliveries", "ok", f"{name} disabled.")


@router.post("/channels/{name}/enable")
def channel_enable(
    request: Request,
    name: Annotated[str, Path(max_length=128)],
    principal: Annotated[Principal, Depends(UI_OPERATE)],
) -> Response:
    """Send to a channel again."""
    outbox.enable_channel(request, name, principal)
    return flash_back(request, f"{PREFIX}/deliveries", "ok", f"{name} enabled.")


@router.post("/channels/{name}/rotate-secret")
def channel_rotate_secret(
    request: Request,
    name: Annotated[str, Path(max_length=128)],
    principal: Annotated[Principal, Depends(UI_ADMIN)],
    overlap: Annotated[str, Form(max_length=16)] = "24h",
) -> Response:
    """Give a webhook channel a new signing secret (admin) and show it, this once."""
    body = outbox.RotateSecretRequest(overlap_s=parse_overlap(overlap))
    out = outbox.rotate_channel_secret(request, Response(), name, principal, body)
    return render(request, "secret_rotated.html", {"r": out})
