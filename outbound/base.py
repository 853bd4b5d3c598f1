"""The outbound channel interface (ADR-0003).

Channels are async.  They classify failures into the error taxonomy (2xx → Receipt,
408/429/5xx/timeouts → RetryableError, 410 → EndpointGoneError, other 4xx → FatalError) but never
retry: the one retry policy lives in the delivery worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to send to one channel target."""

    delivery_id: str  # the idempotency key: stable across retries
    channel: str  # configured channel name, e.g. webhook.sales
    event_type: str  # e.g. lead.scored
    payload: bytes  # JSON body, already serialized
    attempt: int = 1
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that the receiver accepted a delivery."""

    delivery_id: str
    status_code: int | None = None
    remote_id: str | None = None
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class OutboundChannel(Protocol):
    """What every outbound channel provides."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    async def send(self, delivery: Delivery) -> Receipt:
        """Send one delivery; raise a classified JunctionError on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections; safe to call twice."""
        ...
