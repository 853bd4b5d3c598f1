"""Routes: ``POST /records/{pipeline}``, ingest source records with an ``Idempotency-Key``.

The key is claimed first (``junction.store.idempotency``): a repeat with the same body replays
the first answer byte for byte, another body is a 422, a repeat while the first is running a
409.  The records go through the pipeline's ``PushIngestor`` under an event id derived from
(client, pipeline, key), so even a crash between storing the records and storing the answer
cannot store them twice: the retry finds the event stored and answers from the stored rows.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from junction.api.context import ApiContext, ctx_of
from junction.api.policy import INGEST, Principal
from junction.api.problems import ApiProblem
from junction.api.runtime import ingestor_for, require_pipeline
from junction.api.schemas import IngestRequest, IngestResponse, problem
from junction.store.idempotency import MAX_KEY_LEN, IdempotencyKeys, body_hash, derived_id
from junction.store.queries import event_outcome

router = APIRouter(tags=["ingest"])

SOURCE = "api.records"  # not a valid hook source name, so the two never share event ids
_KEYS = "idempotency_keys"


def _keys(ctx: ApiContext) -> IdempotencyKeys:
    keys = ctx.extras.get(_KEYS)
    if keys is None:
        keys = ctx.extras.setdefault(_KEYS, IdempotencyKeys(ctx.store))
    assert isinstance(keys, IdempotencyKeys)
    return keys


def _check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiProblem(
            400,
            "Idempotency-Key required",
            "send an Idempotency-Key header (a unique value per logical request)",
            code="idempotency_key_missing",
        )
    if len(key) > MAX_KEY_LEN or not key.isprintable() or not key.isascii():
        raise ApiProblem(
            400,
            "Invalid Idempotency-Key",
            f"the Idempotency-Key must be 1-{MAX_KEY_LEN} printable ASCII characters",
            code="idempotency_key_invalid",
        )
    return key


def _ingest(
    ctx: ApiContext, pipeline: str, client: str, key: str, records: list[dict[str, Any]]
) -> tuple[int, bytes, bool]:
    """Claim, ingest, answer; (status, body, replayed).  Runs in a worker thread."""
    keys = _keys(ctx)
    scope = f"{client}:records:{pipeline}"
    claim = keys.claim(scope, key, body_hash(records))
    if claim.kind == "replay":
        return int(claim.status_code or 200), claim.response or b"", True
    if claim.kind == "mismatch":
        raise ApiProblem(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different body",
            code="idempotency_key_mismatch",
        )
    if claim.kind == "in_flight":
        raise ApiProblem(
            409,
            "Request in progress",
            "a request with this Idempotency-Key is still being processed; retry later",
            code="idempotency_key_in_flight",
            headers={"Retry-After": str(max(1, math.ceil(claim.retry_after)))},
        )
    event_id = derived_id(client, pipeline, key)
    try:
        outcome = ingestor_for(ctx, pipeline).ingest(records, source=SOURCE, event_id=event_id)
        body = outcome.as_dict()
        status = 201
        if outcome.duplicate:
            # an earlier attempt stored the records and died before answering: answer from them
            body.update(event_outcome(ctx.store, pipeline, SOURCE, event_id, len(records)))
            body["accepted"] = len(body["records"])
            body["quarantined"] = len(body["errors"])
            status = 200
        data = orjson.dumps(body)
    except BaseException:
        keys.release(scope, key, claim.token)
        raise
    keys.complete(scope, key, claim.token, status, data)
    return status, data, False


@router.post(
    "/records/{pipeline}",
    summary="Ingest records into a pipeline",
    status_code=201,
    response_model=IngestResponse,
    responses={
        200: {"model": IngestResponse, "description": "An earlier attempt stored the records."},
        400: problem("Idempotency-Key missing or invalid."),
        404: problem("Unknown pipeline."),
        409: problem("The same key is still being processed."),
        422: problem("Invalid body, or the key was used with another body."),
    },
)
async def ingest(
    request: Request,
    body: IngestRequest,
    principal: Annotated[Principal, Depends(INGEST)],
    pipeline: Annotated[str, Path(max_length=64)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Unique per logical request; a retry with the same body replays the "
            "first answer (kept 24 h).",
        ),
    ] = None,
) -> Response:
    """Normalize, validate, score, route and store up to 1,000 source records, exactly once.

    Answers 201 with the stored records (ids, scores) and the quarantined ones (index, code,
    message).  A repeated request with the same Idempotency-Key and body gets the first answer
    again (header ``Idempotent-Replayed: true``).
    """
    ctx = ctx_of(request)
    require_pipeline(ctx, pipeline)
    key = _check_key(idempotency_key)
    status, data, replayed = await run_in_threadpool(
        _ingest, ctx, pipeline, principal.client_id, key, body.records
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(data, status_code=status, media_type="application/json", headers=headers)
