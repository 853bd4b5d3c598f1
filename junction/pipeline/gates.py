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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from junction.core.errors import JunctionError
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import ThrottleConfig
from junction.pipeline.hygiene import (
    AlertLog,
    RouteRules,
    RouteTable,
    Throttled,
    escalation_step,
    event_of,
    is_digest,
)
from junction.store.suppressions import SuppressionList
from outbound.base import AddressedChannel, Delivery, OutboundChannel, Receipt

if TYPE_CHECKING:
    from junction.pipeline.config import HubConfig
    from junction.store.repo import Store

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


class HygieneGate:
    """Route hygiene before a send: dedupe, throttle per recipient, and escalation marks.

    It applies to deliveries of routes with ``dedupe``, ``throttle``, ``digest`` or
    ``escalate`` (``junction.pipeline.hygiene``).  A repeat of an alert sent on the channel
    within ``dedupe.window_s`` is skipped; a recipient (or, for a channel without recipients,
    the channel) with ``throttle.max`` sends in the last ``throttle.per_s`` makes the delivery
    wait: ``hold`` for the route's digest when it has one, else ``defer`` until the window frees.
    Delivered alerts of an escalating route get their ``escalate_at``.
    """

    def __init__(self, log: AlertLog, routes: RouteTable) -> None:
        """Keep the send log in ``log``; take the routes' settings from ``routes``."""
        self.log = log
        self.routes = routes
        self._keys = routes.hygienic_keys

    def applies(self, delivery: Delivery, channel: OutboundChannel) -> bool:
        """Only deliveries of routes with hygiene."""
        return delivery.route is not None and delivery.route in self._keys

    def decide(self, delivery: Delivery, channel: OutboundChannel, now: float) -> Decision | None:
        """Skip a duplicate, defer or hold a throttled delivery, else let it through."""
        event, rules = self._rules(delivery)
        if rules is None or is_digest(delivery.delivery_id):
            return None
        if escalation_step(delivery.delivery_id):
            return None
        alert, recipients = self._keys_of(rules, event, delivery, channel)
        if alert is None and recipients is None:
            return None
        verdict = self.log.check_and_reserve(
            delivery_id=delivery.delivery_id,
            channel=delivery.channel,
            now=now,
            alert=alert,
            recipients=recipients,
        )
        if verdict == "duplicate":
            return Decision("skip", reason="duplicate alert within window")
        if isinstance(verdict, Throttled):
            if rules.digest is not None:
                return Decision("hold", reason="throttled: waits for the route's digest")
            return Decision("defer", reason="throttled", until=verdict.until)
        return None

    def delivered(
        self, delivery: Delivery, channel: OutboundChannel, receipt: Receipt, now: float
    ) -> None:
        """Log the send (dedupe key, recipients) and set the alert's escalation time."""
        event, rules = self._rules(delivery)
        if rules is None:
            return
        did = delivery.delivery_id
        step = escalation_step(did)
        if not step and not is_digest(did):
            alert, recipients = self._keys_of(rules, event, delivery, channel)
            self.log.record(
                delivery_id=did,
                channel=delivery.channel,
                now=now,
                alert=alert,
                recipients=recipients,
            )
        esc = rules.escalate
        if esc is not None and step < len(esc.to):
            self.log.mark_escalation(did, now + esc.after_s)

    def _rules(self, delivery: Delivery) -> tuple[dict[str, Any], RouteRules | None]:
        event = event_of(delivery.payload)
        return event, self.routes.get(str(event.get("pipeline") or ""), delivery.route)

    def _keys_of(
        self,
        rules: RouteRules,
        event: dict[str, Any],
        delivery: Delivery,
        channel: OutboundChannel,
    ) -> tuple[tuple[str, float] | None, tuple[list[str], ThrottleConfig] | None]:
        alert = None
        if rules.dedupe is not None:
            key = self.log.alert_key(rules, event)
            if key is not None:
                alert = (key, rules.dedupe.window_s)
        recipients = None
        if rules.throttle is not None:
            found: list[tuple[str, str]] | None = None
            if isinstance(channel, AddressedChannel):
                try:
                    found = [
                        (r.kind, r.address)
                        for r in channel.recipients(delivery)
                        if r.address not in delivery.exclude
                    ]
                except JunctionError:
                    found = None  # it names nobody valid: the send itself will say so
                else:
                    if not found:
                        found = None
            recipients = (self.log.recipient_keys(found), rules.throttle)
        return alert, recipients


def build_gates(cfg: HubConfig, store: Store, state_dir: Path) -> list[SendGate]:
    """The send gates the hub config asks for, in the order the worker asks them.

    The suppression list comes first (a suppressed recipient must not reserve a throttle slot);
    its addresses are keyed with the hub's pseudonym key kept in ``state_dir``.
    """
    from junction.pipeline.suppression_gate import SuppressionGate

    pseudonyms = Pseudonymizer.load(state_dir)
    gates: list[SendGate] = [SuppressionGate(SuppressionList(store, pseudonyms))]
    routes = RouteTable(cfg.pipelines)
    if routes.hygienic_keys:  # dedupe, throttle, digest, escalation
        gates.append(HygieneGate(AlertLog(store, pseudonyms), routes))
    return gates
