"""SendGrid's signed event webhook: ``POST /callbacks/sendgrid/{channel}``.

Public (SendGrid sends no credentials; the ECDSA signature is the proof), and the order is the
guarantee, as for ``/hooks``: the body limit is enforced before buffering; the channel's
``event_public_key`` verifies the raw bytes with a replay window; only then is the JSON read; every
event (deduplicated by ``sg_event_id``), its delivery status and any suppression commit in one
transaction; and only then is the answer 200 ``{"accepted": n, "duplicates": m}``.  A store
failure answers 503, so SendGrid retries the batch (for up to 24 hours) and nothing is lost.

``{channel}`` is the configured channel name (``email_sendgrid.sales``) or just its part after the
dot (``sales``).
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from junction.api.context import ApiContext, ctx_of
from junction.api.inbound import retry_after_s, signed_request, store_unavailable
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem, unreadable_status
from junction.api.schemas import problem
from junction.api.sendgrid_events import parse_events, provider_event
from junction.api.verifiers.base import SignatureError, VerifierSettings
from junction.api.verifiers.sendgrid import SendGridEventsVerifier
from junction.core.errors import ConfigError, ParseError, RetryableError
from junction.core.logging import get_logger
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.state import state_dir
from junction.store.provider_events import apply_provider_events
from junction.store.suppressions import SuppressionList
from outbound.email_sendgrid.config import SendGridEmailConfig

log = get_logger(__name__)

router = APIRouter(tags=["callbacks"])
CALLBACK = public("verified by SendGrid's ECDSA signature on the raw body")

KIND = "email_sendgrid"
DEFAULT_RETRY_AFTER_S = 5
_VERIFIERS = "sendgrid_event_verifiers"  # ctx.extras: channel name -> verifier
_SUPPRESSIONS = "suppression_list"  # ctx.extras: the SuppressionList
_lock = threading.Lock()


class SendGridEventsAccepted(BaseModel):
    """What became of one event webhook request."""

    accepted: int = Field(..., description="Events applied for the first time.")
    duplicates: int = Field(..., description="Events seen before (same sg_event_id), ignored.")


def _channel_name(channel: str) -> str:
    return channel if "." in channel else f"{KIND}.{channel}"


def verifier_for(ctx: ApiContext, name: str) -> SendGridEventsVerifier:
    """The channel's event verifier, built once per app.

    Raises:
        ApiProblem: 404 when no such SendGrid channel is configured or it has no
            ``event_public_key``; 500 when its configuration does not validate.
    """
    cache: dict[str, SendGridEventsVerifier] = ctx.extras.setdefault(_VERIFIERS, {})
    verifier = cache.get(name)
    if verifier is not None:
        return verifier
    options = ctx.cfg.channels.get(name)
    if not name.startswith(f"{KIND}.") or options is None:
        raise ApiProblem(
            404, "Not Found", "no SendGrid email channel has this name", code="no_channel"
        )
    try:
        config = SendGridEmailConfig.model_validate(
            {k: v for k, v in options.items() if k != "type"}
        )
    except ValidationError:
        log.error("sendgrid callback channel misconfigured", channel=name)
        raise ApiProblem(
            500,
            "Channel misconfigured",
            "this channel's configuration does not validate",
            code="channel_misconfigured",
        ) from None
    if config.event_public_key is None:
        raise ApiProblem(
            404,
            "Not Found",
            "this channel has no event_public_key, so it takes no events",
            code="events_not_enabled",
        )
    settings = VerifierSettings(
        source=f"sendgrid:{name}",
        secret=None,
        tolerance_s=config.event_tolerance_s,
        options={"public_key": config.event_public_key},
    )
    try:
        verifier = SendGridEventsVerifier(settings)
    except ConfigError as exc:  # the config model checked the key already; defensive
        log.error("sendgrid callback verifier failed", channel=name, code=exc.code)
        raise ApiProblem(500, "Channel misconfigured", code="channel_misconfigured") from None
    cache[name] = verifier
    return verifier


def suppressions_of(ctx: ApiContext) -> SuppressionList:
    """The hub's suppression list, with its pseudonym key (made once per context)."""
    found: SuppressionList | None = ctx.extras.get(_SUPPRESSIONS)
    if found is None:
        with _lock:
            found = ctx.extras.get(_SUPPRESSIONS)
            if found is None:
                found = SuppressionList(ctx.store, Pseudonymizer.load(state_dir(ctx.cfg)))
                ctx.extras[_SUPPRESSIONS] = found
    return found


@router.post(
    "/callbacks/sendgrid/{channel}",
    response_model=SendGridEventsAccepted,
    summary="Receive SendGrid's signed event webhook for an email channel",
    responses={
        400: problem("Verified, but not JSON."),
        401: problem("Missing or bad signature, or a timestamp outside the replay window."),
        404: problem("No SendGrid channel of that name, or it takes no events."),
        413: problem("The body is larger than the API's limit."),
        422: problem("Verified, but not a JSON array of events."),
        500: problem("The channel's configuration does not validate."),
        503: problem("Not stored (store unavailable); SendGrid retries."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "array", "items": {}}}},
            "description": "SendGrid's JSON array of events, signed (ECDSA over timestamp + body).",
        }
    },
)
async def receive_sendgrid_events(
    channel: str, request: Request, _: Annotated[Principal, Depends(CALLBACK)]
) -> SendGridEventsAccepted:
    """Verify, then apply every new event of the batch in one transaction."""
    ctx = ctx_of(request)
    name = _channel_name(channel)
    verifier = verifier_for(ctx, name)
    signed = await signed_request(request)
    body = signed.body
    try:
        verifier.verify(signed, now=time.time())
    except SignatureError as exc:
        log.warning("sendgrid events rejected", channel=name, code=exc.code, reason=exc.reason)
        raise ApiProblem(401, "Unauthorized", exc.user_message, code=exc.code) from None
    try:
        events = [provider_event(e) for e in parse_events(body)]
    except ParseError as exc:
        log.warning("sendgrid events unreadable", channel=name, code=exc.code)
        status = unreadable_status(exc.code)
        raise ApiProblem(status, "Unprocessable body", exc.user_message, code=exc.code) from None
    try:
        applied = await run_in_threadpool(
            partial(
                apply_provider_events,
                ctx.store,
                suppressions_of(ctx),
                source=f"sendgrid:{name}",
                subject=name,
                events=events,
            )
        )
    except RetryableError as exc:
        log.warning("sendgrid events deferred", channel=name, error=type(exc).__name__)
        raise store_unavailable(
            "the events were not stored; retry later", retry_after_s(exc, DEFAULT_RETRY_AFTER_S)
        ) from None
    log.info(
        "sendgrid events accepted",
        channel=name,
        accepted=applied.accepted,
        duplicates=applied.duplicates,
        suppressed=applied.suppressed,
        matched=applied.matched,
    )
    return SendGridEventsAccepted(accepted=applied.accepted, duplicates=applied.duplicates)
