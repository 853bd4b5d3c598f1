"""The source connector interface (ADR-0003).

Connectors are synchronous (the vendor SDKs are blocking); the engine runs them in worker threads.
A connector yields raw dicts (or rows under a header that read as dicts, ADR-0027) plus
provenance in batches; each batch carries the cursor to resume *after* it.  Normalization belongs
in ``mappings/``, never in a connector.

Every connector's config model accepts ``batch_size`` (records per batch): the pipeline passes
its own ``batch_size`` to every connector (``junction.pipeline.extract.build_connector``), and a
connector whose batches are the source's pages may treat it as an upper bound on the page size.
The contract suite checks this.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    FETCH = "fetch"  # can read given records by id (``FetchById``), e.g. after a webhook event


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
    records: Sequence[dict[str, Any]]  # a list, or junction.core.rows.HeaderRows
    keys: list[str]
    positions: list[int]
    cursor: dict[str, Any]
    errors: list[RowError] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    # the version of each record in its source (e.g. Salesforce ``SystemModstamp``), as strings
    # that sort in version order (fixed-width UTC ISO-8601, zero-padded numbers); with them the
    # store keeps the newest version per source key: an older one arriving late is stored as
    # history but neither routed nor delivered (``junction.store.heads``)
    versions: Sequence[str | None] | None = None

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


@runtime_checkable
class FetchById(Protocol):
    """A connector that can read given records by their source ids (``Capability.FETCH``)."""

    def fetch(self, stream: str, ids: list[str]) -> RawBatch:
        """Read the current state of ``ids`` in ``stream``; ids that no longer exist are absent.

        ``positions[j]`` of the answer is the index in ``ids`` of record ``j``'s id.
        """
        ...


@dataclass(frozen=True, slots=True)
class PushItem:
    """One item of a pushed delivery (a webhook body holds one or many).

    Either ``record`` is the raw record itself (Salesforce Outbound Messages carry the fields),
    or ``fetch_id`` names a record to read through ``FetchById.fetch`` (HubSpot events carry only
    the object id).  ``event_id`` is the sender's id of this item: the durable dedupe key.
    """

    event_id: str
    stream: str
    record: dict[str, Any] | None = None
    fetch_id: str | None = None
    version: str | None = None  # sortable, as ``RawBatch.versions``
    key: str | None = None  # the record's stable key; default ``<stream>/<event_id>``


@dataclass(frozen=True, slots=True)
class PushAck:
    """The body a source expects once its delivery is durably stored (e.g. a SOAP Ack)."""

    body: bytes
    media_type: str


@runtime_checkable
class PushParser(Protocol):
    """A connector that reads its source's own webhook bodies (``Capability.PUSH``).

    ``parse_push`` runs after the hook's verifier accepted the raw body; it must not do I/O and
    raises ``ParseError`` for a body it cannot read.  ``push_ack`` is what the source expects as
    the 2xx answer; None means the hub's JSON answer.
    """

    def parse_push(self, body: bytes, headers: dict[str, str]) -> list[PushItem]:
        """The items of one verified delivery, in the order the source sent them."""
        ...

    def push_ack(self, items: list[PushItem]) -> PushAck | None:
        """The success answer for a stored delivery, or None for the hub's JSON answer."""
        ...
