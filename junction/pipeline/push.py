"""Pushed records: the same normalize → validate → score → route path as polled ones, synchronously.

Inbound webhooks and ``POST /records/{pipeline}`` hand a list of source payloads to
``PushIngestor``; it prepares them as one batch and stores their effects with the event's dedupe
key in one transaction (``junction.store.inbound.write_pushed``).  Only after that returns may the
caller answer 2xx, so an acknowledged record is always durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.base import RawBatch
from junction.core import tracing
from junction.core.errors import ConfigError
from junction.pipeline import traces
from junction.pipeline.backpressure import OutboxPressure
from junction.pipeline.runner import PipelineRunner
from junction.store.inbound import write_pushed

MAX_PUSH_RECORDS = 1000


@dataclass
class PushOutcome:
    """What became of one pushed event."""

    event_id: str
    duplicate: bool = False
    stored: list[dict[str, Any]] = field(default_factory=list)  # {index, record_id, score?}
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # {index, stage, code, ...}
    routed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (no payload values: they may be personal data)."""
        return {
            "event_id": self.event_id,
            "duplicate": self.duplicate,
            "accepted": len(self.stored),
            "quarantined": len(self.quarantined),
            "routed": self.routed,
            "records": self.stored,
            "errors": self.quarantined,
        }


class PushIngestor:
    """Ingests pushed payloads into one pipeline."""

    def __init__(
        self,
        runner: PipelineRunner,
        *,
        max_records: int = MAX_PUSH_RECORDS,
        pressure: OutboxPressure | None = None,
    ) -> None:
        """Use ``runner``'s compiled mapping, rules, scorer and routes; ``pressure`` refuses
        pushes while the outbox is over its cap."""
        self.runner = runner
        self.max_records = max_records
        self.pressure = pressure

    def ingest(
        self,
        payloads: list[dict[str, Any]],
        *,
        source: str,
        event_id: str,
        provenance: dict[str, Any] | None = None,
    ) -> PushOutcome:
        """Normalize, score, route and durably store ``payloads`` as one event."""
        if not payloads:
            raise ConfigError("no records in the request")
        if len(payloads) > self.max_records:
            raise ConfigError(f"at most {self.max_records} records per request")
        if not all(isinstance(p, dict) for p in payloads):
            raise ConfigError("every record must be a JSON object")
        n = len(payloads)
        batch = RawBatch(
            stream=f"push:{source}",
            records=payloads,
            keys=[f"{source}:{event_id}:{i}" for i in range(n)],
            positions=list(range(n)),
            cursor={},
            provenance={"topic": f"push:{source}", **(provenance or {})},
        )
        return self.ingest_batch(batch, source=source, event_id=event_id)

    def ingest_batch(
        self, batch: RawBatch, *, source: str, event_id: str, item_ids: list[str] | None = None
    ) -> PushOutcome:
        """Normalize, score, route and durably store one pushed batch.

        ``event_id`` names the delivery; ``item_ids`` are the sender's ids of its items when it
        carries several events (each one deduplicated on its own).  ``batch.positions`` are the
        items' indexes in the delivery, reported back per stored or quarantined record.
        """
        if self.pressure is not None:
            self.pressure.check()  # before anything is prepared or stored
        runner = self.runner
        # a batch pushed by an HTTP request is a child of the request's span, which continues
        # the caller's ``traceparent`` (junction.api.middleware)
        with traces.batch(runner.name, runner.connector.name, batch, traces.read_started()):
            with runner.prepare_lock:  # shared with the runner's own runs and replays
                prepared = runner.preparer.prepare(batch, None)
            with tracing.span("junction.store", traces.stored(prepared)):
                routed = write_pushed(
                    runner.store,
                    source=source,
                    event_id=item_ids if item_ids else event_id,
                    records=prepared.records,
                    scores=prepared.scores,
                    deliveries=prepared.deliveries,
                    quarantined=prepared.quarantined,
                    heads=prepared.heads,
                    outcomes=prepared.outcomes,
                )
        out = PushOutcome(event_id, duplicate=routed is None)
        if routed is None:
            return out
        name = self.runner.name
        index_of = {f"{name}:{k}": p for k, p in zip(batch.keys, batch.positions, strict=True)}
        scores = {row[0]: row for row in prepared.scores}
        for row in prepared.records:
            rid = row[0]
            item: dict[str, Any] = {"index": index_of[rid], "record_id": rid}
            score = scores.get(rid)
            if score is not None:
                item["score"] = {"value": score[3], "grade": score[4], "model_version": score[1]}
            out.stored.append(item)
        for q in prepared.quarantined:
            # (pipeline, stage, key, type, code, message, context, payload, ...)
            out.quarantined.append(
                {
                    "index": index_of.get(str(q[2])),
                    "stage": q[1],
                    "code": q[4],
                    "message": q[5],
                    "context": orjson.loads(q[6]),
                }
            )
        out.stored.sort(key=lambda d: d["index"])
        out.quarantined.sort(key=lambda d: (d["index"] is None, d["index"] or 0))
        out.routed = routed
        return out
