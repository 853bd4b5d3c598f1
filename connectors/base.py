"""The source connector interface (ADR-0003).

Connectors are synchronous (the vendor SDKs are blocking); the engine runs them in worker threads.
A connector yields raw dicts plus provenance in batches; each batch carries the cursor to resume
*after* it.  Normalization belongs in ``mappings/``, never in a connector.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel


class Capability(StrEnum):
    """What a connector can do, declared once on its class."""

    DISCOVER = "discover"
    INCREMENTAL = "incremental"
    DELETES = "deletes"
    FILES = "files"
    PUSH = "push"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream a connector can read."""

    name: str
    json_schema: dict[str, Any]
    key_fields: tuple[str, ...] = ()
    cursor_field: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of ``check()``: expected failures are results, not raises."""

    ok: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class RowError:
    """A row the connector could not parse; the runner quarantines it and goes on."""

    key: str
    position: int
    raw: bytes
    error: Exception


@dataclass(slots=True)
class RawBatch:
    """A batch of raw records, columnar to keep per-row overhead low.

    ``records[i]`` has the stable key ``keys[i]`` and the source position ``positions[i]``.
    ``errors`` holds rows that failed to parse (quarantined by the runner).
    ``cursor`` is where to resume after this batch; the runner commits it only once the batch
    is durable.
    """

    stream: str
    records: list[dict[str, Any]]
    keys: list[str]
    positions: list[int]
    cursor: dict[str, Any]
    errors: list[RowError] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


@runtime_checkable
class SourceConnector(Protocol):
    """What every source connector provides."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[frozenset[Capability]]

    def check(self) -> CheckResult:
        """Check connectivity, auth and permissions."""
        ...

    def discover(self) -> list[StreamInfo]:
        """List the streams this connector can read."""
        ...

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Yield batches of ``stream`` after ``cursor``; each batch carries its next cursor."""
        ...

    def close(self) -> None:
        """Release resources; safe to call twice."""
        ...
