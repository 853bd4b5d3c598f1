"""Request and response models of the scoring, ingest and operations routes (API DTOs only).

Routes on the hot path (``/score-lead``, ``/score``) parse raw bytes and answer with orjson; these
models still describe them in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.lead import Lead

MAX_BATCH = 1000
T = TypeVar("T")
Responses: TypeAlias = dict[int | str, dict[str, Any]]


def problem(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a problem+json error."""
    return {"description": description, "content": {"application/problem+json": {}}}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# scoring


class ScoreMappedRequest(_In):
    """A lead in a source system's shape, mapped by a built-in mapping before scoring."""

    payload: dict[str, Any] = Field(..., description="The source record's fields.")
    mapping: str = Field(
        ..., max_length=64, description="Built-in mapping id, e.g. csv.lead.", examples=["csv.lead"]
    )


class FactorOut(BaseModel):
    """One feature's signed contribution to the log-odds."""

    feature: str
    contribution: float


class ScoreLeadResponse(BaseModel):
    """A lead's score and what to do about it."""

    score: float = Field(..., ge=0.0, le=1.0, description="Probability of conversion.")
    grade: Literal["A", "B", "C", "D"]
    top_factors: list[FactorOut]
    next_action: str = Field(
        ..., description="call_within_1_hour (A), call_today (B), nurture_email (C), no_action (D)."
    )
    model: str
    model_version: str
    variant: str


class RecordErrorOut(BaseModel):
    """Why one record of a batch was not scored."""

    code: str
    message: str


class ScoreBatchItem(BaseModel):
    """One record's answer in a batch: its score, or its error."""

    index: int
    score: float | None = None
    grade: Literal["A", "B", "C", "D"] | None = None
    top_factors: list[FactorOut] | None = None
    next_action: str | None = None
    error: RecordErrorOut | None = None


class ScoreBatchResponse(BaseModel):
    """Answers for a batch, one per record, in the request's order."""

    model: str
    model_version: str
    variant: str
    scored: int
    failed: int
    results: list[ScoreBatchItem]


def score_request_schema() -> dict[str, Any]:
    """JSON Schema of one scoring request body: a canonical Lead or a mapped source payload."""
    return {"anyOf": [Lead.model_json_schema(), ScoreMappedRequest.model_json_schema()]}


# ingest


class IngestRequest(_In):
    """Source records pushed into a pipeline."""

    records: list[dict[str, Any]] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description="Source payloads (at most 1,000)."
    )


class StoredScore(BaseModel):
    """The score stored with an ingested record."""

    value: float
    grade: str
    model_version: str


class IngestedRecord(BaseModel):
    """A record stored from the request."""

    index: int | None
    record_id: str
    score: StoredScore | None = None


class IngestError(BaseModel):
    """A record of the request that was quarantined, and why."""

    index: int | None
    stage: str
    code: str
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class IngestResponse(BaseModel):
    """What became of the pushed records (replayed as is for a repeated Idempotency-Key)."""

    event_id: str
    duplicate: bool = Field(..., description="True when an earlier attempt stored the records.")
    accepted: int
    quarantined: int
    routed: int
    records: list[IngestedRecord]
    errors: list[IngestError]


# operations


class ReasonRequest(_In):
    """Why an operator acts (kept in the audit log)."""

    reason: str = Field(..., min_length=1, max_length=500)


class CursorResetRequest(_In):
    """Where a stream should resume for a backfill."""

    stream: str = Field(..., min_length=1, max_length=1024)
    value: dict[str, Any] | None = Field(
        None, description="The cursor to resume after; null starts the stream from the beginning."
    )
    reason: str | None = Field(None, max_length=500)


class CursorRestoreRequest(_In):
    """Which stream gets its saved live cursor back."""

    stream: str = Field(..., min_length=1, max_length=1024)


class RunOut(BaseModel):
    """One run of one pipeline."""

    id: int
    pipeline: str
    status: str
    started_at: float
    finished_at: float | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class PipelineOut(BaseModel):
    """A configured pipeline, whether it is paused, and its newest run."""

    name: str
    connector: str
    mapping: str
    schedule: str | None = None
    model: str | None = Field(None, description="The scoring model, if the pipeline scores.")
    channels: list[str] = Field(default_factory=list, description="Channels its routes feed.")
    paused: bool
    last_run: RunOut | None = None


class PipelineDetail(PipelineOut):
    """A pipeline with its totals."""

    counts: dict[str, int]


class RunSummaryOut(BaseModel):
    """Counts of a run started through the API."""

    pipeline: str
    run_id: int
    files: int
    files_failed: int
    read: int
    stored: int
    quarantined: int
    routed: int
    seconds: float
    errors: list[str] = Field(default_factory=list)


class RunQueuedOut(BaseModel):
    """A run handed to the scheduler."""

    pipeline: str
    queued: bool = True
    state: str = Field("queued", description="queued, or running when one was already due.")


class PausedOut(BaseModel):
    """A pipeline's paused state after a pause or resume."""

    pipeline: str
    paused: bool
    changed: bool


class ScoreOut(BaseModel):
    """A stored score."""

    model: str
    model_version: str
    value: float
    grade: str
    factors: list[FactorOut]
    variant: str
    scored_at: float


class RecordOut(BaseModel):
    """A stored canonical record (without its payload) and its newest score."""

    id: str
    pipeline: str
    entity: str
    source_system: str
    source_key: str
    schema_version: str
    run_id: int | None = None
    received_at: float
    score: ScoreOut | None = None


class DeliveryOut(BaseModel):
    """One outbox row (without its payload)."""

    id: str
    record_id: str
    pipeline: str
    channel: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: float
    last_status: int | None = None
    last_error: str | None = None
    created_at: float
    delivered_at: float | None = None


class RecordDetail(BaseModel):
    """A record with its payload (personal fields masked unless revealed), scores, deliveries."""

    id: str
    pipeline: str
    entity: str
    source_system: str
    source_key: str
    schema_version: str
    run_id: int | None = None
    received_at: float
    payload: dict[str, Any]
    provenance: dict[str, Any]
    revealed: bool
    scores: list[ScoreOut]
    deliveries: list[DeliveryOut]


class AttemptOut(BaseModel):
    """One delivery attempt."""

    id: int
    attempt_no: int
    started_at: float
    duration_ms: float
    status_code: int | None = None
    outcome: str
    error: str | None = None


class DeliveryDetail(DeliveryOut):
    """A delivery with its payload (personal values masked unless revealed) and attempts."""

    payload: Any = None
    revealed: bool
    history: list[AttemptOut] = Field(..., description="Every attempt, oldest first.")


class QuarantineOut(BaseModel):
    """A quarantine entry (a dead letter), without its bytes."""

    id: int
    pipeline: str
    stage: str
    record_key: str
    error_type: str
    error_code: str
    message: str
    context: dict[str, Any]
    provenance: dict[str, Any]
    status: str
    created_at: float
    resolved_at: float | None = None
    run_id: int | None = None


class RawPayloadOut(BaseModel):
    """Original bytes: JSON (``data``, masked unless revealed) or other bytes (by size)."""

    format: Literal["json", "bytes"]
    size: int
    data: Any = None
    text: str | None = None
    base64: str | None = None
    truncated: bool | None = None


class QuarantineDetail(QuarantineOut):
    """A quarantine entry with its original bytes."""

    payload: RawPayloadOut | None = None
    revealed: bool


class ReplayOut(BaseModel):
    """What a replay did."""

    id: int
    outcome: str
    status: str


class DiscardOut(BaseModel):
    """A discarded quarantine entry."""

    id: int
    status: str
    reason: str


class SigningSecretOut(BaseModel):
    """A stored signing secret of a webhook channel, never its value."""

    id: str
    origin: str = Field(description="rotated, or config (the config's secret it replaced).")
    created_at: float
    retires_at: float | None = Field(
        None, description="Stops signing at this time (a rotation's overlap); None: current."
    )


class ChannelOut(BaseModel):
    """A configured channel, whether it is disabled, and its deliveries by status."""

    name: str
    kind: str
    disabled: bool
    reason: str | None = None
    updated_at: float | None = None
    deliveries: dict[str, int] = Field(default_factory=dict)
    signing_secrets: list[SigningSecretOut] = Field(
        default_factory=list,
        description="Rotated secrets that still sign (current first); empty: the config's "
        "secret signs alone.",
    )


class SavedCursor(BaseModel):
    """The live cursor saved by a reset."""

    value: dict[str, Any]
    updated_at: float


class CursorOut(BaseModel):
    """A stream's live cursor and, during a backfill, the saved live position."""

    stream: str
    value: dict[str, Any] | None = None
    updated_at: float | None = None
    saved: SavedCursor | None = None


class CursorResetOut(BaseModel):
    """A reset cursor: the live value before, the one now, the saved copy."""

    stream: str
    previous: dict[str, Any] | None = None
    value: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None


class CursorRestoreOut(BaseModel):
    """A restored cursor."""

    stream: str
    value: dict[str, Any] | None = None


class Page(BaseModel, Generic[T]):
    """A page of a list; ``next`` continues it (null on the last page)."""

    items: list[T]
    next: str | None = Field(None, description="Pass as `cursor` to get the next page.")
