"""What an outbound channel hands the channel contract suite: a live fake and fault knobs.

Each registered channel kind ``<kind>`` (entry point group ``junction.channels``) has
``tests/contract/channels/<kind>.py`` with a function
``contract(tmp_path) -> ContextManager[ChannelContract]``.  The suite in ``test_channels.py`` is
generated from the registry: a channel registered without a fixture fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from outbound.base import Delivery
from tests.fakes.server import Faults


@dataclass
class ChannelContract:
    """One channel's contract inputs.

    Attributes:
        options: valid channel options (``config_model.model_validate(options)``) pointing at the
            running fake (or a local target such as a folder or the test broker).
        delivery: ``delivery(delivery_id)`` builds a Delivery the channel can send (a realistic
            event payload with ``record`` and ``score``; recipients that are not suppressed).
        seen_ids: the idempotency keys the fake received, in order, as read off the wire (the
            ``webhook-id`` header, SendGrid ``custom_args``, a Kafka message key or header, ...).
        fail_next: ``fail_next(kind, n)`` makes the fake fail its next ``n`` requests with
            ``client_error`` (a 4xx that is not 408/429), ``server_error`` (5xx) or ``hang`` (no
            answer until after ``timeout_options``' timeout); ``n = 0`` clears.  None for channels
            with no remote: those checks are waived with the reason in ``waivers``.
        timeout_options: ``options`` with a short timeout (at most 2 s) for the ``hang`` check.
        secrets: values that must never appear in a log line, repr or error message.
        waivers: check name → reason and issue id, for checks that cannot apply.  Check names:
            ``idempotency``, ``receipt``, ``client_error``, ``server_error``, ``timeout``,
            ``redaction``, ``aclose``, ``unknown_keys``.
        bad_options: options the config model or the channel's constructor refuses (a typo in an
            auth setting, a nested option missing); the error must not echo a secret.  The suite
            also tries ``options`` with each required field left out and with an unknown key.
    """

    options: dict[str, Any]
    delivery: Callable[[str], Delivery]
    seen_ids: Callable[[], list[str]]
    fail_next: Callable[[str, int], None] | None = None
    timeout_options: dict[str, Any] | None = None
    secrets: list[str] = field(default_factory=list)
    waivers: dict[str, str] = field(default_factory=dict)
    bad_options: list[dict[str, Any]] = field(default_factory=list)


# the contract's fault kinds, as tests.fakes.server.Faults names them
FAULTS = {"client_error": "client_error", "server_error": "server_error", "hang": "timeout"}


def fail_next_on(faults: Faults) -> Callable[[str, int], None]:
    """A ``ChannelContract.fail_next`` that queues the contract's fault kinds on ``faults``."""

    def fail_next(kind: str, n: int) -> None:
        faults.fail_next(FAULTS[kind], n)

    return fail_next


def faults_contract(
    options: dict[str, Any],
    delivery: Callable[[str], Delivery],
    seen_ids: Callable[[], list[str]],
    faults: Faults,
    **rest: Any,
) -> ChannelContract:
    """The contract of a channel whose HTTP fake fails on ``faults`` and hangs past 0.5 s.

    ``fail_next`` queues the contract's fault kinds on ``faults``; ``timeout_options`` are
    ``options`` with ``timeout_s: 0.5``; ``rest`` (``secrets``, ``bad_options``, ...) as given.
    """
    return ChannelContract(
        options=options,
        delivery=delivery,
        seen_ids=seen_ids,
        fail_next=fail_next_on(faults),
        timeout_options={**options, "timeout_s": 0.5},
        **rest,
    )


# a score as the scorer writes it, and the short form some fixtures use
SCORE: dict[str, Any] = {
    "value": 0.91,
    "grade": "A",
    "top_factors": [["page_views", 0.42], ["industry=software", 0.17]],
    "model_version": "lead-score@1",
}
SHORT_SCORE: dict[str, Any] = {"value": 0.91, "grade": "A", "top_factors": [["page_views", 0.42]]}


def lead_event(
    delivery_id: str, record: dict[str, Any], score: dict[str, Any] = SCORE
) -> dict[str, Any]:
    """A ``lead.scored`` event for lead ``L-1001`` of pipeline ``leads``, keyed by the delivery."""
    return {
        "type": "lead.scored",
        "record_id": f"leads:contract:{delivery_id}",
        "pipeline": "leads",
        "entity": "lead",
        "source_key": "L-1001",
        "record": record,
        "score": score,
    }


def lead_delivery(
    delivery_id: str, channel: str, record: dict[str, Any], score: dict[str, Any] = SCORE
) -> Delivery:
    """A delivery of ``lead_event(delivery_id, record, score)`` to ``channel``."""
    event = lead_event(delivery_id, record, score)
    return Delivery(delivery_id, channel, "lead.scored", orjson.dumps(event))
