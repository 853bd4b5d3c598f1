"""Send gates: checks the delivery worker runs on a delivery just before sending it.

A gate looks at one delivery and its channel and either lets it through (``None``) or decides
something else: ``suppress`` (every recipient is on the suppression list), ``skip`` (a repeat of
an alert within its dedupe window), ``defer`` (a throttle: try again at ``until``, not a failed
attempt) or ``hold`` (it waits for its digest).  ``send`` with ``exclude`` lets it through
without some recipients.  Gates run in a worker thread (they may query the store) and only for
deliveries they apply to (``applies`` is cheap and synchronous), so channels without gates, such
as plain webhooks, pay nothing.

Built-in gates: the suppression list (``SuppressionGate``) and route hygiene (dedupe, throttle,
digest: ``HygieneGate``).  ``build_gates`` makes them from the hub config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from outbound.base import Delivery, OutboundChannel, Receipt

Action = Literal["send", "suppress", "skip", "defer", "hold"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a gate decided for one delivery."""

    action: Action
    reason: str = ""
    until: float | None = None  # defer: the earliest next attempt (Unix time)
    exclude: frozenset[str] = frozenset()  # send: recipients to leave out


class SendGate(Protocol):
    """One check before sending."""

    def applies(self, delivery: Delivery, channel: OutboundChannel) -> bool:
        """Cheap and synchronous: does this gate care about ``delivery`` at all?"""
        ...

    def decide(self, delivery: Delivery, channel: OutboundChannel, now: float) -> Decision | None:
        """Decide (may query the store; runs in a thread); None lets the delivery through."""
        ...

    def delivered(
        self, delivery: Delivery, channel: OutboundChannel, receipt: Receipt, now: float
    ) -> None:
        """Note a successful send (e.g. for dedupe windows and throttles); runs in a thread."""
        ...
