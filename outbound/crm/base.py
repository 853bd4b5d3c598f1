"""What a CRM write-back backend provides to the ``crm`` channel.

The channel (``outbound.crm.channel``) turns scored-record deliveries into ``WriteBack`` items,
collects concurrent ones into batches and hands each batch to the backend of the configured CRM.
A backend is synchronous (the vendor SDKs block); the channel runs it in a thread.  It raises a
classified ``JunctionError`` when the whole call failed (auth, 429, 5xx, timeout), and otherwise
returns one ``WriteResult`` per item, in order, so a partial failure (HubSpot's 207, a Salesforce
row error) fails only its own delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from junction.core.errors import JunctionError


@dataclass(frozen=True, slots=True)
class WriteBack:
    """One record's fields to write: ``target`` is the CRM id, or the external id's value."""

    delivery_id: str
    object_type: str  # e.g. Lead (Salesforce), contacts (HubSpot)
    target: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one item: ``error`` is None when the CRM accepted it."""

    remote_id: str | None = None
    error: JunctionError | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class WriteBackend(Protocol):
    """One CRM's write-back: ``options_model`` validates ``channels.crm.<name>.connection``."""

    system: ClassVar[str]
    options_model: ClassVar[type[BaseModel]]
    max_batch: ClassVar[int]  # the CRM's own limit per call (HubSpot batch: 100, SF: 200)

    def write(self, items: list[WriteBack]) -> list[WriteResult]:
        """Write ``items`` (same object type); one result per item, in order."""
        ...

    def close(self) -> None:
        """Release sessions; safe to call twice."""
        ...
