"""The ingest role: read a pipeline's source and pass its raw rows on to the raw topic.

``IngestRunner`` is the pipeline runner (files, polls, cursors, the file ledger, archiving)
with its batch preparation replaced: a batch becomes raw stage messages, written as relay rows in
ONE transaction with the batch's cursor, then published (``relay``).  A crash after the commit
leaves the rows unpublished: the next ingest of the pipeline publishes them first, in order.
Unparseable rows are quarantined here, as in a single-process run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from connectors.base import RawBatch
from junction.core import metrics, tracing
from junction.core.errors import JunctionError, RecordError
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import HubConfig
from junction.pipeline.prepare import BatchPreparer, PreparedBatch, quarantine_row
from junction.pipeline.runner import PipelineRunner, RunSummary
from junction.pipeline.stages.relay import Relay, RelayRow, insert_rows, relay_row
from junction.pipeline.stages.topics import Item, encode, headers_of, topic_name
from junction.pipeline.stages.traced import with_trace
from junction.pipeline.stages.worker import require_bus
from junction.store.repo import Store


def ingest_scope(pipeline: str) -> str:
    """The relay scope of an ingest pipeline (one ingest process per pipeline holds it)."""
    return f"ingest:{pipeline}"


class RelayBatch(PreparedBatch):
    """A prepared batch that passes raw rows on instead of writing canonical records."""

    relay: list[RelayRow]


class RawPreparer(BatchPreparer):
    """Turns a connector's batch into raw stage messages (no mapping, no scoring)."""

    topic: str

    def prepare(
        self, batch: RawBatch, run_id: int | None, *, split_personal: bool = False
    ) -> PreparedBatch:
        """Relay rows for the batch's records; quarantine rows for the ones it could not read.

        No record rows are written here, so ``split_personal`` has nothing to split.
        """
        out = RelayBatch(batch.stream, batch.cursor, len(batch) + len(batch.errors))
        out.relay = []
        name, topic = self.name, self.topic
        where: dict[str, Any] = {"connector": self.connector}
        where.update({k: batch.provenance[k] for k in ("file", "topic") if k in batch.provenance})
        if "file" not in where and "topic" not in where:
            where["stream"] = batch.stream
        for row_err in batch.errors:
            err = row_err.error
            if not isinstance(err, JunctionError):
                err = RecordError(f"unreadable row: {type(err).__name__}")
            out.quarantined.append(
                quarantine_row(
                    name,
                    "extract",
                    f"{name}:{row_err.key}",
                    err,
                    row_err.raw,
                    {**where, "position": row_err.position},
                    run_id,
                )
            )
        versions = batch.versions
        scope = ingest_scope(name)
        # the batch's span (ADR-0022): the stage workers continue it from this header
        traceparent = tracing.current_traceparent()
        for i, record in enumerate(batch.records):
            key = batch.keys[i]
            item = Item(
                pipeline=name,
                record_id=f"{name}:{key}",
                key=key,
                stream=batch.stream,
                position=batch.positions[i],
                version=versions[i] if versions is not None else None,
                provenance={**where, "position": batch.positions[i]},
                record=record,
            )
            value = encode(item, "raw")
            digest = hashlib.blake2b(value, digest_size=8).hexdigest()
            out.relay.append(
                relay_row(
                    scope,
                    topic,
                    item.subject,
                    value,
                    with_trace(headers_of(item, "raw"), traceparent),
                    f"{topic}|{item.record_id}|{digest}",
                )
            )
        return out


class IngestRunner(PipelineRunner):
    """A pipeline runner whose batches go to the raw topic through the relay."""

    def __init__(
        self,
        name: str,
        hub: HubConfig,
        store: Store,
        relay: Relay,
        registry: Registry = default_registry,
    ) -> None:
        """Compile the source and the mapping's entity; no model, no routes, no worker pool."""
        bus = require_bus(hub)
        # ingest reads the source alone: scoring and routing happen in the later roles
        cfg = hub.pipelines[name].model_copy(update={"scoring": None, "routes": [], "workers": 0})
        super().__init__(name, cfg, hub, store, registry)
        raw = RawPreparer(name, cfg, self.connector.name, None)
        raw.topic = topic_name(bus.topic_prefix, "raw", raw.entity)
        self.raw_preparer = raw
        self.topic = raw.topic
        self.relay = relay

    def _compiled(self) -> tuple[BatchPreparer, Any]:
        return self.raw_preparer, None

    def recover(self) -> int:
        """Publish what an earlier ingest of this pipeline committed but did not send."""
        return self.relay.publish([ingest_scope(self.name)])

    def commit(
        self, prepared: PreparedBatch, summary: RunSummary, *, with_cursor: bool = True
    ) -> None:
        """Write the batch's relay rows, quarantine rows and cursor in one transaction; publish."""
        rows = prepared.relay if isinstance(prepared, RelayBatch) else []
        store = self.store
        store.write_batch(
            records=(),
            scores=(),
            deliveries=(),
            quarantined=prepared.quarantined,
            cursor=(self.name, prepared.stream, prepared.cursor) if with_cursor else None,
            also=(lambda conn: insert_rows(store, conn, rows)) if rows else None,
        )
        self.relay.publish([ingest_scope(self.name)])
        metrics.observe_batch(
            self.name, prepared.read, len(rows), [(q[1], q[4]) for q in prepared.quarantined]
        )
        summary.read += prepared.read
        summary.stored += len(rows)
        summary.quarantined += len(prepared.quarantined)
