"""Routes: synchronous lead scoring, ``POST /score-lead`` (one) and ``POST /score`` (up to 1,000).

These are the hot path partners call per lead, so they read the raw body, score inline on the
event loop with the compiled model (no thread hop, no pandas) and answer with orjson.  The
OpenAPI document still describes the bodies, through ``openapi_extra`` and ``responses``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from junction.api.context import ctx_of
from junction.api.policy import SCORE, Principal
from junction.api.problems import ApiProblem, malformed_json
from junction.api.schemas import (
    MAX_BATCH,
    Responses,
    ScoreBatchResponse,
    ScoreLeadResponse,
    problem,
    score_request_schema,
)
from junction.api.scoring import (
    LeadScoring,
    Mapped,
    answer,
    invalid,
    lead_scoring,
    parse_item,
    record_scores,
    score_batch,
    score_lead,
)
from schemas.lead import Lead
from scoring.base import Scorer

router = APIRouter(tags=["scoring"])

PipelineQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Score with this pipeline's model settings; default: the newest lead-score.",
    ),
]
_ERRORS: Responses = {
    400: problem("The body is not valid JSON."),
    404: problem("Unknown pipeline."),
    409: problem("The pipeline does not score."),
    422: problem("The body or a record is invalid."),
}


def _json_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise malformed_json() from None


async def _scorer(svc: LeadScoring, pipeline: str | None) -> Scorer:
    scorer = svc.cached_scorer(pipeline)
    if scorer is None:
        scorer = await run_in_threadpool(svc.load_scorer, pipeline)
    return scorer


async def _mappings(svc: LeadScoring, items: list[Any]) -> None:
    for item in items:
        if isinstance(item, Mapped) and svc.cached_mapping(item.mapping) is None:
            svc.check_mapping(item.mapping)
            await run_in_threadpool(svc.load_mapping, item.mapping)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post(
    "/score-lead",
    summary="Score one lead",
    responses={200: {"model": ScoreLeadResponse, "description": "The lead's score."}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": score_request_schema()}},
        }
    },
)
async def score_one(
    request: Request,
    _: Annotated[Principal, Depends(SCORE)],
    pipeline: PipelineQuery = None,
) -> Response:
    """Score one lead, given as a canonical Lead or as a source payload plus a built-in mapping.

    Answers the score, grade, top factors, next action and the model that scored it.
    """
    started = time.perf_counter()
    ctx = ctx_of(request)
    svc = lead_scoring(ctx)
    item = parse_item(_json_body(await request.body()))
    scorer = await _scorer(svc, pipeline)
    if isinstance(item, Mapped):
        await _mappings(svc, [item])
    lead = svc.to_lead(item)
    score = score_lead(scorer, lead)
    body = answer(score)
    record_scores(request, scorer, [(lead, body)], time.perf_counter() - started)
    return _json(body)


@router.post(
    "/score",
    summary="Score up to 1,000 leads",
    responses={
        200: {"model": ScoreBatchResponse, "description": "One answer per record, in order."},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_BATCH,
                        "items": score_request_schema(),
                    }
                }
            },
        }
    },
)
async def score_many(
    request: Request,
    _: Annotated[Principal, Depends(SCORE)],
    pipeline: PipelineQuery = None,
) -> Response:
    """Score a batch of leads (same two forms as ``/score-lead``, as a JSON array).

    A record that cannot be scored gets ``error: {code, message}`` at its index instead of
    failing the batch.
    """
    started = time.perf_counter()
    ctx = ctx_of(request)
    svc = lead_scoring(ctx)
    data = _json_body(await request.body())
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_BATCH:
        kind = "list_type" if not isinstance(data, list) else "too_long" if data else "too_short"
        raise invalid([{"loc": ["body"], "type": kind}])
    scorer = await _scorer(svc, pipeline)
    items: list[Lead | Mapped | ApiProblem] = []
    for i, raw in enumerate(data):
        try:
            item = parse_item(raw, ("body", i))
            if isinstance(item, Mapped):
                await _mappings(svc, [item])
            items.append(item)
        except ApiProblem as exc:
            items.append(_record_problem(exc))
    results, leads = score_batch(svc, scorer, items)
    answers = [r for r in results if "error" not in r]
    record_scores(
        request, scorer, list(zip(leads, answers, strict=True)), time.perf_counter() - started
    )
    return _json(
        {
            "model": scorer.name,
            "model_version": scorer.version,
            "variant": str(getattr(scorer, "variant", "production")),
            "scored": len(answers),
            "failed": len(results) - len(answers),
            "results": results,
        }
    )


def _record_problem(exc: ApiProblem) -> ApiProblem:
    """A per-record error naming the invalid fields (never their values)."""
    fields = sorted({".".join(e["loc"][2:]) or "record" for e in exc.extra.get("errors", [])})
    if exc.code == "invalid_request" and fields:
        exc.detail = f"the record does not match the schema: {', '.join(fields)}"
    return exc
