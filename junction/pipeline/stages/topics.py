"""Stage topics, message keys and the stage messages' wire format (ADR-0018).

Topics are ``<prefix>.raw|canonical|scored.<entity>.v1``.  Every message is one JSON object
(orjson) keyed by the record's *subject key*, ``<pipeline>:<source key without "@version">``:
connectors key versioned records ``<id>@<version>``, so every version of one source record lands
in one partition and stays in order, while the record id (with its version) travels in the value
and in the ``junction-record-id`` header.

A raw message carries the source row as the connector read it; a canonical one the canonical
record; a scored one is the event a channel receives (``type``, ``record_id``, ``pipeline``,
``entity``, ``source_key``, ``record``, ``score``) plus where the record came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from junction.core.errors import ConfigError, RecordError

ROLES = ("ingest", "normalize", "score", "deliver")
STAGES = ("raw", "canonical", "scored")
# the stage topic each role reads, and the one it writes (None: the outbox, not a topic)
ROLE_INPUT: dict[str, str | None] = {
    "ingest": None,
    "normalize": "raw",
    "score": "canonical",
    "deliver": "scored",
}
ROLE_OUTPUT: dict[str, str | None] = {
    "ingest": "raw",
    "normalize": "canonical",
    "score": "scored",
    "deliver": None,
}
HEADER_PIPELINE = "junction-pipeline"
HEADER_RECORD = "junction-record-id"
HEADER_STAGE = "junction-stage"


def topic_name(prefix: str, stage: str, entity: str) -> str:
    """The stage topic of ``entity``: ``<prefix>.<stage>.<entity>.v1``."""
    return f"{prefix}.{stage}.{entity}.v1"


def subject_key(pipeline: str, key: str) -> str:
    """The message key: the pipeline and the source key without its ``@version`` suffix."""
    return f"{pipeline}:{key.split('@', 1)[0]}"


def parse_roles(text: str) -> tuple[str, ...]:
    """``normalize,score`` → the roles in flow order; they must be contiguous.

    ``ingest`` reads the sources, so it runs alone; the other roles may be fused (one process
    reads the first role's topic, writes the last role's output, skips the topics between).

    Raises:
        ConfigError: an unknown role, a repeated one, a gap, or ingest with others.
    """
    names = [r.strip() for r in text.split(",") if r.strip()]
    if not names:
        raise ConfigError("--role needs at least one of " + "|".join(ROLES))
    unknown = [r for r in names if r not in ROLES]
    if unknown:
        raise ConfigError(f"unknown role {unknown[0]!r}; roles: {'|'.join(ROLES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"role list {text!r} repeats a role")
    if "ingest" in names and len(names) > 1:
        raise ConfigError("ingest runs alone: it reads the sources, the others read topics")
    order = sorted(names, key=ROLES.index)
    first = ROLES.index(order[0])
    if order != list(ROLES[first : first + len(order)]):
        raise ConfigError(f"roles {text!r} are not contiguous (flow: {' → '.join(ROLES)})")
    return tuple(order)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a consumed message came from: its topic, partition, offset and bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def scope(self) -> str:
        """The relay scope of what this message produces: its input partition."""
        return f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class Item:
    """One record between stages (decoded from, or encoded to, a stage message)."""

    pipeline: str
    record_id: str
    key: str
    stream: str
    position: int
    version: str | None
    provenance: dict[str, Any]
    # the source row (raw), or the consumed canonical record until a role validates it
    record: dict[str, Any] | None = None
    body: bytes | None = None  # the canonical record's JSON, serialized from the model
    source_key: str | None = None
    entity: str | None = None
    schema_version: str | None = None
    score: dict[str, Any] | None = None
    model: Any = None  # the canonical model, in this process only (fused stages)
    src: Source | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """The message key of this record's stage messages."""
        return subject_key(self.pipeline, self.key)


def headers_of(item: Item, stage: str) -> dict[str, str]:
    """The string headers every stage message carries."""
    return {HEADER_PIPELINE: item.pipeline, HEADER_RECORD: item.record_id, HEADER_STAGE: stage}


def encode(item: Item, stage: str) -> bytes:
    """The message value of ``item`` on the ``stage`` topic."""
    message: dict[str, Any] = {
        "pipeline": item.pipeline,
        "record_id": item.record_id,
        "key": item.key,
        "stream": item.stream,
        "position": item.position,
        "version": item.version,
        "provenance": item.provenance,
    }
    if stage == "raw":
        message["record"] = item.record
        return orjson.dumps(message)
    if item.body is None:
        raise RecordError("a canonical stage message needs the canonical record")
    # one key at a time, in wire order: no keyword dict a message, as ``update`` would build
    message["source_key"] = item.source_key
    message["entity"] = item.entity
    message["schema_version"] = item.schema_version
    message["record"] = orjson.Fragment(item.body)
    if stage != "canonical":
        message["type"] = item.extra.get("event_type") or f"{item.entity}.scored"
        message["score"] = item.score
    return orjson.dumps(message)


_REQUIRED = ("pipeline", "record_id", "key", "stream", "position", "record")


def decode(value: bytes | None, stage: str, src: Source) -> Item:
    """The item of one consumed stage message.

    Raises:
        RecordError: not a JSON object, a missing or mistyped field (names the field).
    """
    if value is None:
        raise RecordError("stage message has no value (a tombstone)", code="stage_message")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("stage message is not JSON", code="stage_message") from exc
    if not isinstance(data, dict):
        raise RecordError("stage message is not a JSON object", code="stage_message")
    for name in _REQUIRED:
        if name not in data:
            raise RecordError(
                f"stage message has no {name!r}", code="stage_message", context={"field": name}
            )
    record = data["record"]
    if not isinstance(record, dict):
        raise RecordError("stage message's 'record' is not an object", code="stage_message")
    for name in ("pipeline", "record_id", "key", "stream"):
        if not isinstance(data[name], str):
            raise RecordError(
                f"stage message's {name!r} is not a string",
                code="stage_message",
                context={"field": name},
            )
    position = data["position"]
    if not isinstance(position, int) or isinstance(position, bool):
        raise RecordError("stage message's 'position' is not an integer", code="stage_message")
    version = data.get("version")
    provenance = data.get("provenance") or {}
    item = Item(
        pipeline=data["pipeline"],
        record_id=data["record_id"],
        key=data["key"],
        stream=data["stream"],
        position=position,
        version=version if isinstance(version, str) else None,
        provenance=provenance if isinstance(provenance, dict) else {},
        src=src,
    )
    if stage == "raw":
        item.record = record
        return item
    item.record = record  # validated into the model, and serialized from it, by the roles
    sk = data.get("source_key")
    item.source_key = sk if isinstance(sk, str) else item.key
    item.entity = data.get("entity") if isinstance(data.get("entity"), str) else None
    sv = data.get("schema_version")
    item.schema_version = sv if isinstance(sv, str) else None
    if stage == "scored":
        score = data.get("score")
        item.score = score if isinstance(score, dict) else None
    return item
