"""The outbound channel interface (ADR-0003).

Channels are async.  They classify failures into the error taxonomy (2xx → Receipt,
408/429/5xx/timeouts → RetryableError, 410 → EndpointGoneError, other 4xx → FatalError) but never
retry: the one retry policy lives in the delivery worker.

A channel whose provider reports every send back with the delivery id, and takes a whole
delivery in one call (SendGrid: ``custom_args`` echoed in its events, all recipients in one Mail
Send), sets ``reported_sends = True``: a pending delivery the provider has already reported (its
``remote_status`` is set) was sent by an attempt the hub never recorded (a worker stopped between
the provider's answer and the recording), so the worker records it delivered instead of sending
it again.  Channels that send per recipient (Twilio) leave it False: a report names one
recipient, not the delivery.
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
    # the route (by name) that created it; channels pick the route's template by it
    route: str | None = None
    template: str | None = None  # the template the route asks for (None: the channel's default)
    # recipients the worker found on the suppression list: the channel must leave them out
    exclude: frozenset[str] = frozenset()
    # the route lets personal fields show in clear in rendered messages (else they are masked)
    reveal_pii: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that the receiver accepted a delivery."""

    delivery_id: str
    status_code: int | None = None
    remote_id: str | None = None
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person or address a delivery reaches, as the suppression list knows it.

    ``kind`` is the address space (``email``, ``phone``, ``slack``); ``address`` is normalized the
    way the channel sends to it (lower-case email, E.164 phone).
    """

    kind: str
    address: str


@runtime_checkable
class AddressedChannel(Protocol):
    """A channel that reaches people (email, SMS, chat): the worker checks its recipients first.

    Before each send the delivery worker asks for the recipients, looks them up on the suppression
    list, and either records the delivery as ``suppressed`` (all of them opted out or bounced) or
    sends it with the suppressed ones in ``Delivery.exclude``.
    """

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        """Return who ``delivery`` would reach (raise a RecordError if it names nobody valid)."""
        ...


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
