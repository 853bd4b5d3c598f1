"""Twilio's callbacks for each ``sms_twilio`` channel: message status and inbound SMS.

``POST /callbacks/twilio/{channel}/status`` receives a message's status changes (Twilio calls the
StatusCallback URL the channel sent, which carries ``?delivery_id=``).  Each
``(MessageSid, MessageStatus)`` is applied once (``inbound_events``, source
``twilio:<channel>``): the delivery's ``remote_status`` is set (found by ``delivery_id``, else by
``remote_id = MessageSid``), and ``ErrorCode`` 21610 (the recipient had replied STOP) puts ``To``
on the suppression list.

``POST /callbacks/twilio/{channel}/inbound`` receives texts people send to the channel's number:
STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT or REVOKE (trimmed, any case) suppress the
sender; START, UNSTOP or YES lift it.  The answer is empty TwiML (Twilio itself confirms opt-outs).

Both verify ``X-Twilio-Signature`` with the channel's auth token on the channel's ``public_url``
before reading anything (403 otherwise), and answer 503 when the store fails, so Twilio retries.
Phone numbers never reach logs or events except as keyed pseudonyms.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from junction.api.context import ApiContext, ctx_of
from junction.api.inbound import signed_request, store_unavailable
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem
from junction.api.schemas import problem
from junction.api.verifiers.base import SignatureError, VerifierSettings
from junction.api.verifiers.twilio import FormParams, TwilioVerifier, form_of
from junction.core.errors import RetryableError
from junction.core.logging import get_logger
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.state import state_dir
from junction.store import tables as t
from junction.store.opt_in import lift_once
from junction.store.provider_events import Applied, ProviderEvent, apply_provider_events
from junction.store.suppressions import SuppressionList
from outbound.sms_twilio.config import TwilioSmsConfig
from outbound.sms_twilio.phones import to_e164

log = get_logger(__name__)

router = APIRouter(tags=["callbacks"])
CALLBACK = public("verified by Twilio's signature over the URL and form")

KIND = "sms_twilio"
STOPPED = "21610"
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
RETRY_AFTER_S = 5
# how far along a message is: a status never replaces one further along
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivery_unknown": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "partially_delivered": 5,
    "read": 6,
}
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CACHE = "twilio_callbacks"  # ctx.extras: channel -> _Channel
_lock = threading.Lock()

# what both callbacks may answer besides their own success and 400s
_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: problem("Missing or wrong X-Twilio-Signature."),
    404: problem("No sms_twilio channel has this name."),
    500: problem("The channel's configuration does not validate."),
    503: problem("Not stored (store unavailable); Twilio retries."),
}
FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        "description": "Twilio's form, signed with X-Twilio-Signature.",
    }
}


@dataclass(frozen=True)
class _Channel:
    name: str
    config: TwilioSmsConfig
    verifier: TwilioVerifier
    suppressions: SuppressionList

    @property
    def source(self) -> str:
        return f"twilio:{self.name}"


def _channel(ctx: ApiContext, name: str) -> _Channel:
    cache: dict[str, _Channel] = ctx.extras.setdefault(_CACHE, {})
    found = cache.get(name)
    if found is not None:
        return found
    options = ctx.cfg.channels.get(name)
    if options is None or name.split(".", 1)[0] != KIND:
        raise ApiProblem(404, "Not Found", "no Twilio channel has this name", code="no_channel")
    try:
        config = TwilioSmsConfig.model_validate({k: v for k, v in options.items() if k != "type"})
    except ValidationError:
        log.error("twilio callback channel misconfigured", channel=name)
        raise ApiProblem(
            500,
            "Channel misconfigured",
            "this channel cannot verify callbacks until its configuration is fixed",
            code="channel_misconfigured",
        ) from None
    verifier = TwilioVerifier(
        VerifierSettings(
            source=f"twilio:{name}",
            secret=config.auth_token.get_secret_value(),
            options={"public_url": config.public_base},
        )
    )
    with _lock:
        found = cache.get(name)
        if found is None:
            suppressions = SuppressionList(ctx.store, Pseudonymizer.load(state_dir(ctx.cfg)))
            found = cache[name] = _Channel(name, config, verifier, suppressions)
    return found


async def _verified_form(request: Request, channel: _Channel) -> FormParams:
    signed = await signed_request(request)
    try:
        channel.verifier.verify(signed, now=0.0)
        return form_of(signed)
    except SignatureError as exc:
        log.warning("twilio callback rejected", channel=channel.name, reason=exc.reason)
        raise ApiProblem(403, "Forbidden", exc.user_message, code=exc.code) from None


async def _verified(request: Request, channel: str) -> tuple[ApiContext, _Channel, FormParams]:
    """The app's context, the named channel and the callback's form, once its signature holds."""
    ctx = ctx_of(request)
    ch = _channel(ctx, channel)
    return ctx, ch, await _verified_form(request, ch)


def _unavailable(channel: _Channel, exc: RetryableError) -> ApiProblem:
    log.warning("twilio callback deferred", channel=channel.name, code=exc.code)
    return store_unavailable("the callback was not stored; retry later", RETRY_AFTER_S)


def _phone(raw: str | None) -> str | None:
    if not raw:
        return None
    # a number Twilio reports is real even when phonenumbers' metadata does not know its range yet:
    # an opt-out must never be lost to that
    return to_e164(raw) or (raw if E164.match(raw) else None)


@router.post(
    "/callbacks/twilio/{channel}/status",
    status_code=204,
    summary="Receive a Twilio message status callback",
    responses={
        400: problem("Verified, but without MessageSid or MessageStatus."),
        **_RESPONSES,
    },
    openapi_extra=FORM_BODY,
)
async def twilio_status(
    channel: str, request: Request, _: Annotated[Principal, Depends(CALLBACK)]
) -> Response:
    """Apply one status change once; 21610 suppresses the recipient."""
    ctx, ch, form = await _verified(request, channel)
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        raise ApiProblem(
            400, "Bad Request", "MessageSid and MessageStatus are required", code="bad_callback"
        )
    stopped = form.get("ErrorCode") == STOPPED
    to = _phone(form.get("To")) if stopped else None
    event = ProviderEvent(
        event_id=f"{sid}:{status}"[:256],
        status=status,
        delivery_id=request.query_params.get("delivery_id") or None,
        remote_id=sid,
        suppress_kind="phone" if to else None,
        address=to,
        reason="stop" if to else None,
    )
    try:
        applied = await run_in_threadpool(_apply_status, ctx, ch, event)
    except RetryableError as exc:
        raise _unavailable(ch, exc) from None
    log.info(
        "twilio status received",
        channel=ch.name,
        status=status,
        duplicate=bool(applied.duplicates),
        matched=applied.matched,
        suppressed=applied.suppressed,
    )
    return Response(status_code=204)


@router.post(
    "/callbacks/twilio/{channel}/inbound",
    summary="Receive an SMS sent to a Twilio channel's number (STOP / START)",
    response_class=Response,
    responses={
        200: {"description": "Empty TwiML.", "content": {"text/xml": {}}},
        **_RESPONSES,
    },
    openapi_extra=FORM_BODY,
)
async def twilio_inbound(
    channel: str, request: Request, _: Annotated[Principal, Depends(CALLBACK)]
) -> Response:
    """Suppress a sender who texts STOP, lift it on START; answer empty TwiML."""
    ctx, ch, form = await _verified(request, channel)
    keyword = (form.get("Body") or "").strip().upper()
    sender = _phone(form.get("From"))
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
    action = "stop" if keyword in OPT_OUT else "start" if keyword in OPT_IN else None
    if action is not None and sender is not None and sid:
        event_id = f"{sid}:received"[:256]
        try:
            result = await run_in_threadpool(_apply_keyword, ctx, ch, action, sender, event_id)
        except RetryableError as exc:
            raise _unavailable(ch, exc) from None
        log.info("twilio opt-out keyword", channel=ch.name, action=action, changed=result)
    return Response(EMPTY_TWIML, media_type="text/xml")


def _apply_status(ctx: ApiContext, ch: _Channel, event: ProviderEvent) -> Applied:
    current = _current_status(ctx, ch, event)
    if _rank(current) > _rank(event.status):
        # Twilio does not promise order: a late "sent" must not overwrite "delivered"
        event = replace(event, status=None)
    return apply_provider_events(
        ctx.store, ch.suppressions, source=ch.source, subject=ch.name, events=[event]
    )


def _rank(status: str | None) -> int:
    return STATUS_RANK.get(status or "", -1)


def _current_status(ctx: ApiContext, ch: _Channel, event: ProviderEvent) -> str | None:
    c = t.deliveries.c
    where = c.id == event.delivery_id if event.delivery_id else c.remote_id == event.remote_id
    with ctx.store.begin() as conn:
        row = conn.execute(select(c.remote_status).where(where, c.channel == ch.name)).first()
    return None if row is None else row[0]


def _apply_keyword(ctx: ApiContext, ch: _Channel, action: str, sender: str, event_id: str) -> Any:
    if action == "stop":
        applied = apply_provider_events(
            ctx.store,
            ch.suppressions,
            source=ch.source,
            subject=ch.name,
            events=[
                ProviderEvent(
                    event_id=event_id, suppress_kind="phone", address=sender, reason="stop"
                )
            ],
        )
        return bool(applied.suppressed)
    return lift_once(
        ctx.store,
        ch.suppressions,
        source=ch.source,
        subject=ch.name,
        event_id=event_id,
        kind="phone",
        address=sender,
    )
