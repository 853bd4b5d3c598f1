"""Inbound webhooks: ``POST /hooks/{source}`` for every configured source that pushes.

The order is the guarantee: the body limit is enforced in ASGI before anything is buffered
(``junction.api.bodylimit``); the source's verifier checks the signature on the raw bytes; only
then is the body parsed; the records, their effects and the sender's delivery id are stored in one
transaction (``PushIngestor``); and only after that commit is the request answered 2xx.  A
redelivery of a stored event is answered ``duplicate`` and stores nothing.  When the store is down
the answer is 503 with ``Retry-After`` and the event is not marked seen, so the sender's retry
stores it.  A verified body that cannot be read as records is quarantined with its original bytes
(answered 422), so nothing a source proved it sent is lost.
"""

from __future__ import annotations

import hashlib
import time
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from connectors.base import PushParser
from junction.api.context import ApiContext, ctx_of
from junction.api.inbound import retry_after_s, signed_request, store_unavailable
from junction.api.policy import Principal, public
from junction.api.problems import ApiProblem, unreadable_status
from junction.api.runtime import ingestor_for
from junction.api.schemas import IngestResponse, problem
from junction.api.verifiers import (
    SignatureError,
    SignedRequest,
    Verifier,
    VerifierSettings,
    default_verifiers,
)
from junction.core import metrics
from junction.core.errors import ConfigError, ParseError, RetryableError
from junction.core.logging import get_logger
from junction.pipeline.config import HookConfig
from junction.pipeline.prepare import quarantine_row
from junction.pipeline.push import MAX_PUSH_RECORDS, PushIngestor, PushOutcome
from junction.pipeline.push_items import ingest_pushed_body, parser_of
from junction.store.inbound import seen

log = get_logger(__name__)

router = APIRouter(tags=["hooks"])
HOOK = public("verified by the source's signature on the raw body")

DEFAULT_RETRY_AFTER_S = 5
_VERIFIERS = "hook_verifiers"  # ctx.extras: source -> Verifier


def verifier_for(ctx: ApiContext, source: str, hook: HookConfig) -> Verifier:
    """The hook's verifier, built once per app (``ConfigError`` when it cannot be built)."""
    cache: dict[str, Verifier] = ctx.extras.setdefault(_VERIFIERS, {})
    verifier = cache.get(source)
    if verifier is None:
        settings = VerifierSettings(
            source=source,
            secret=hook.secret.get_secret_value() if hook.secret is not None else None,
            tolerance_s=hook.tolerance_s,
            options=hook.options,
        )
        verifier = default_verifiers.build(hook.verifier, settings)
        cache[source] = verifier
    return verifier


def check_hooks(ctx: ApiContext) -> None:
    """Build every hook's verifier now, so a bad secret or option fails at start, not per call."""
    for source, hook in ctx.cfg.api.hooks.items():
        verifier_for(ctx, source, hook)


def parse_records(body: bytes) -> list[dict[str, Any]]:
    """Records of a JSON body: one object, a list of objects, or ``{"records": [...]}``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ParseError("the body is not valid JSON", code="invalid_json") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    records = [data] if isinstance(data, dict) else data
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ParseError(
            "the body must be a JSON object, a list of objects or {records: [...]}",
            code="unexpected_shape",
        )
    if not records:
        raise ParseError("the body holds no records", code="no_records")
    if len(records) > MAX_PUSH_RECORDS:
        raise ParseError(
            f"at most {MAX_PUSH_RECORDS} records per delivery", code="too_many_records"
        )
    return records


def _unavailable(exc: RetryableError, source: str) -> ApiProblem:
    log.warning("hook deferred", source=source, error=type(exc).__name__, code=exc.code)
    metrics.observe_hook_deferred(source, exc.code)  # a long run of these alerts
    return store_unavailable(
        "the delivery was not stored; retry later", retry_after_s(exc, DEFAULT_RETRY_AFTER_S)
    )


@router.post(
    "/hooks/{source}",
    response_model=IngestResponse,
    summary="Receive a signed webhook delivery from a source",
    responses={
        400: problem("Verified, but not JSON; quarantined with its bytes."),
        401: problem("Missing or bad signature, or a timestamp outside the window."),
        404: problem("No hook is configured for this source."),
        413: problem("The body is larger than the hook's limit."),
        422: problem("Verified, but not readable as records; quarantined with its bytes."),
        500: problem("The hook's verifier is misconfigured."),
        503: problem("Not stored (store or pipeline unavailable); retry after Retry-After."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {}}},
            "description": "One record, a list of records, or {records: [...]}; signed.",
        }
    },
)
async def receive_hook(
    source: str, request: Request, _: Annotated[Principal, Depends(HOOK)]
) -> Any:
    """Verify, store, then acknowledge one delivery; a redelivery is answered as a duplicate."""
    ctx = ctx_of(request)
    hook = ctx.cfg.api.hooks.get(source)
    if hook is None:
        raise ApiProblem(404, "Not Found", "no hook is configured for this source", code="no_hook")
    try:
        verifier = verifier_for(ctx, source, hook)
    except ConfigError as exc:
        log.error("hook misconfigured", source=source, error=exc.user_message)
        raise ApiProblem(
            500,
            "Hook misconfigured",
            "this hook cannot verify deliveries until its configuration is fixed",
            code="hook_misconfigured",
        ) from None

    signed = await signed_request(request)
    body = signed.body
    try:
        verified = verifier.verify(signed, now=time.time())
    except SignatureError as exc:
        log.warning("hook rejected", source=source, code=exc.code, reason=exc.reason)
        raise ApiProblem(401, "Unauthorized", exc.user_message, code=exc.code) from None
    event_id = verified.event_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
    provenance = {"hook": source, "event_id": event_id}

    try:
        ingestor = await run_in_threadpool(_ingestor, ctx, hook.pipeline)
    except RetryableError as exc:
        raise _unavailable(exc, source) from None
    parser = parser_of(ingestor)
    if parser is not None:  # the source's own format (Salesforce SOAP, HubSpot events)
        return await _receive_native(
            ctx, ingestor, parser, hook.pipeline, source, event_id, signed, provenance
        )

    try:
        records = parse_records(body)
    except ParseError as exc:
        raise await _quarantine_body(
            ctx, hook.pipeline, source, event_id, exc, body, provenance
        ) from None

    try:
        outcome = await run_in_threadpool(
            _ingest, ctx, hook.pipeline, records, source, event_id, provenance
        )
    except RetryableError as exc:
        raise _unavailable(exc, source) from None
    log.info(
        "hook accepted",
        source=source,
        duplicate=outcome.duplicate,
        accepted=len(outcome.stored),
        quarantined=len(outcome.quarantined),
    )
    return IngestResponse.model_validate(outcome.as_dict())


def _ingestor(ctx: ApiContext, pipeline: str) -> PushIngestor:
    try:
        return ingestor_for(ctx, pipeline)
    except ConfigError as exc:
        # e.g. the model cannot load: fail closed, the sender retries once it is fixed
        log.error("hook pipeline unavailable", pipeline=pipeline, code=exc.code)
        raise RetryableError(
            "the pipeline is not ready", retry_after=30, code="pipeline_unavailable"
        ) from None


def _ingest(
    ctx: ApiContext,
    pipeline: str,
    records: list[dict[str, Any]],
    source: str,
    event_id: str,
    provenance: dict[str, Any],
) -> PushOutcome:
    # a known delivery is answered without preparing it again; the insert below still dedupes
    if seen(ctx.store, source, event_id):
        return PushOutcome(event_id, duplicate=True)
    ingestor = _ingestor(ctx, pipeline)
    return ingestor.ingest(records, source=source, event_id=event_id, provenance=provenance)


async def _receive_native(
    ctx: ApiContext,
    ingestor: PushIngestor,
    parser: PushParser,
    pipeline: str,
    source: str,
    event_id: str,
    signed: SignedRequest,
    provenance: dict[str, Any],
) -> Any:
    """Parse with the connector, dedupe per item, fetch, store; then answer as the source wants."""
    try:
        result = await run_in_threadpool(
            partial(
                ingest_pushed_body,
                ingestor,
                parser,
                source=source,
                delivery_id=event_id,
                body=signed.body,
                headers=dict(signed.headers),
                provenance=provenance,
            )
        )
    except ParseError as exc:
        raise await _quarantine_body(
            ctx, pipeline, source, event_id, exc, signed.body, provenance
        ) from None
    except RetryableError as exc:
        raise _unavailable(exc, source) from None
    outcome = result.outcome
    log.info(
        "hook accepted",
        source=source,
        duplicate=outcome.duplicate,
        accepted=len(outcome.stored),
        quarantined=len(outcome.quarantined),
        ignored=result.ignored,
    )
    if result.ack is not None:
        return Response(result.ack.body, media_type=result.ack.media_type)
    return IngestResponse.model_validate(outcome.as_dict())


async def _quarantine_body(
    ctx: ApiContext,
    pipeline: str,
    source: str,
    event_id: str,
    exc: ParseError,
    body: bytes,
    provenance: dict[str, Any],
) -> ApiProblem:
    """Quarantine a verified but unreadable body with its bytes; return the 422 to answer."""
    # keyed by the delivery id: the sender's retries of this body add no second entry
    row = quarantine_row(
        pipeline,
        "extract",
        f"{pipeline}:{source}:{event_id}",
        exc,
        body,
        {**provenance, "stream": f"push:{source}", "bytes": len(body)},
        None,
        {"source": source, "event_id": event_id},
    )
    try:
        await run_in_threadpool(ctx.store.quarantine_one, row)
    except RetryableError as err:
        raise _unavailable(err, source) from None
    log.warning("hook body quarantined", source=source, code=exc.code, bytes=len(body))
    return ApiProblem(
        unreadable_status(exc.code),
        "Unprocessable body",
        f"{exc.user_message}; the delivery was quarantined",
        code=exc.code,
        extra={"event_id": event_id, "quarantined": True},
    )
