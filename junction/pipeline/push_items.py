"""Webhook bodies in a source's own format: the connector parses them, the hub stores them.

Sources such as Salesforce (Outbound Messages, SOAP) and HubSpot (a JSON array of events) push in
their own shapes.  Their connector implements ``PushParser``: it turns the verified raw body into
``PushItem``s, each with the sender's id for dedupe, and either the record itself or the id of a
record to read back (``FetchById``: HubSpot events name an object, not its state).  This module
drops items whose event id was stored before, fetches what must be fetched, and hands one
``RawBatch`` to the ``PushIngestor``, which stores the effects and the item ids in one
transaction.  The source's answer (a SOAP Ack, or the hub's JSON) is sent only after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.base import Capability, FetchById, PushAck, PushItem, PushParser, RawBatch
from junction.core.errors import ConfigError
from junction.pipeline.push import PushIngestor, PushOutcome
from junction.store.inbound import seen_ids


@dataclass
class PushResult:
    """The stored outcome and the answer the source expects."""

    outcome: PushOutcome
    ack: PushAck | None
    ignored: int = 0  # items of streams this pipeline does not read


def parser_of(ingestor: PushIngestor) -> PushParser | None:
    """The pipeline's connector when it reads its source's own webhook bodies."""
    connector = ingestor.runner.connector
    if Capability.PUSH in connector.capabilities and isinstance(connector, PushParser):
        return connector
    return None


def ingest_pushed_body(
    ingestor: PushIngestor,
    parser: PushParser,
    *,
    source: str,
    delivery_id: str,
    body: bytes,
    headers: dict[str, str],
    provenance: dict[str, object],
) -> PushResult:
    """Parse, dedupe, fetch and store one verified delivery (``ParseError`` when unreadable)."""
    items = parser.parse_push(body, headers)
    ack = parser.push_ack(items)
    wanted = ingestor.runner.cfg.source.streams
    kept = [it for it in items if not wanted or it.stream in wanted]
    ignored = len(items) - len(kept)
    if not kept:
        return PushResult(PushOutcome(delivery_id, duplicate=False), ack, ignored)
    known = seen_ids(ingestor.runner.store, source, [it.event_id for it in kept])
    fresh = [it for it in kept if it.event_id not in known]
    if not fresh:
        return PushResult(PushOutcome(delivery_id, duplicate=True), ack, ignored)
    batch = _batch_of(ingestor, fresh, source, provenance)
    outcome = ingestor.ingest_batch(
        batch, source=source, event_id=delivery_id, item_ids=[it.event_id for it in fresh]
    )
    return PushResult(outcome, ack, ignored)


def _batch_of(
    ingestor: PushIngestor, items: list[PushItem], source: str, provenance: dict[str, object]
) -> RawBatch:
    """One batch of the items' records, fetched where the items only name them."""
    records: list[dict[str, Any]] = []
    batch = RawBatch(
        stream=f"push:{source}",
        records=records,
        keys=[],
        positions=[],
        cursor={},
        provenance={"topic": f"push:{source}", **provenance},
        versions=[],
    )
    versions: list[str | None] = []
    to_fetch: dict[str, dict[str, int]] = {}  # stream -> record id -> first item index
    for index, item in enumerate(items):
        if item.record is not None:
            records.append(item.record)
            batch.keys.append(item.key or f"{item.stream}/{item.event_id}")
            batch.positions.append(index)
            versions.append(item.version)
        elif item.fetch_id is not None:
            to_fetch.setdefault(item.stream, {}).setdefault(item.fetch_id, index)
    if to_fetch:
        connector = ingestor.runner.connector
        if not isinstance(connector, FetchById):
            raise ConfigError(
                f"connector {connector.name} names records to fetch but cannot fetch them"
            )
        for stream, ids in to_fetch.items():
            order = list(ids.values())  # item index of each requested id, in request order
            fetched = connector.fetch(stream, list(ids))
            for j, record in enumerate(fetched.records):
                records.append(record)
                batch.keys.append(fetched.keys[j])
                at = fetched.positions[j] if j < len(fetched.positions) else 0
                batch.positions.append(order[at] if 0 <= at < len(order) else order[0])
                versions.append(fetched.versions[j] if fetched.versions is not None else None)
    batch.versions = versions
    return batch
