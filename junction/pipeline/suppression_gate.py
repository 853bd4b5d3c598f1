"""The suppression gate: addresses on the suppression list never get another message.

It applies to channels that reach people (``outbound.base.AddressedChannel``: email, SMS, chat).
Before a send it looks up the delivery's recipients on the suppression list (one query per
address kind): when every recipient is suppressed the delivery is recorded as ``suppressed`` and
nothing is sent; when some are, it is sent with those in ``Delivery.exclude``.  Plain webhooks
are not addressed, so they never pay for the check.

The delivery worker also hands it the addresses a provider refused for good
(``RecipientRejectedError``), which it adds to the list with the provider's reason.
"""

from __future__ import annotations

from collections import defaultdict

from junction.core.errors import RecipientRejectedError
from junction.core.logging import get_logger
from junction.pipeline.gates import Decision
from junction.store.suppressions import SUPPRESSION_KINDS, SuppressionList
from outbound.base import AddressedChannel, Delivery, OutboundChannel, Receipt

log = get_logger(__name__)


class SuppressionGate:
    """Suppress or trim deliveries whose recipients are on the suppression list."""

    def __init__(self, suppressions: SuppressionList) -> None:
        """Check and extend ``suppressions``."""
        self.suppressions = suppressions
        self._addressed: dict[type, bool] = {}

    def applies(self, delivery: Delivery, channel: OutboundChannel) -> bool:
        """Only channels that reach people (``AddressedChannel``)."""
        cls = type(channel)
        known = self._addressed.get(cls)
        if known is None:
            known = self._addressed[cls] = isinstance(channel, AddressedChannel)
        return known

    def decide(self, delivery: Delivery, channel: OutboundChannel, now: float) -> Decision | None:
        """``suppress`` when every recipient is suppressed, ``send`` without the suppressed ones.

        Raises:
            RecordError: The channel finds nobody valid to send ``delivery`` to.
        """
        assert isinstance(channel, AddressedChannel)
        recipients = [r for r in channel.recipients(delivery) if r.address not in delivery.exclude]
        if not recipients:
            return None
        by_kind: dict[str, list[str]] = defaultdict(list)
        for r in recipients:
            if r.kind in SUPPRESSION_KINDS:
                by_kind[r.kind].append(r.address)
        hit: set[str] = set()
        for kind, addresses in by_kind.items():
            hit |= self.suppressions.suppressed(kind, addresses)
        if not hit:
            return None
        if all(r.address in hit for r in recipients):
            return Decision("suppress", reason="every recipient is on the suppression list")
        return Decision("send", reason="some recipients are suppressed", exclude=frozenset(hit))

    def delivered(
        self, delivery: Delivery, channel: OutboundChannel, receipt: Receipt, now: float
    ) -> None:
        """Nothing to note: the list changes on bounces and opt-outs, not on sends."""

    def suppress(self, rejected: RecipientRejectedError, *, source: str) -> bool:
        """Add the address a provider refused for good; True if it was not suppressed yet."""
        if rejected.kind not in SUPPRESSION_KINDS:
            log.warning("recipient rejected with an unknown address kind", kind=rejected.kind)
            return False
        return self.suppressions.add(
            rejected.kind, rejected.address, reason=rejected.reason or "rejected", source=source
        )
