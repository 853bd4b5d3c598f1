"""Channel contract fixture: ``kafka`` against a real Kafka-protocol broker (tansu on 127.0.0.1).

Each contract gets its own broker (so stopping or freezing it disturbs nobody else) and a topic
template, ``junction.contract.{entity}.v1``, that the lead event fills as
``junction.contract.lead.v1``.  The idempotency keys are read off the wire: ``seen_ids`` consumes
the topic and returns the ``event-id`` header of every record, in partition/offset order.

Faults, as Kafka has them (there is no status code to inject):

* ``client_error``: the next ``n`` deliveries the factory builds carry a payload larger than
  ``message.max.bytes`` (1 MB), which Kafka rejects for good (``MSG_SIZE_TOO_LARGE``);
* ``server_error``: the broker is stopped (every connection refused) until the fault is cleared or
  ``n`` deliveries later, when a fresh broker starts on the same port (its memory storage is empty,
  so the topic is created again);
* ``hang``: the broker is frozen with SIGSTOP (connections stay open, nothing is answered) until
  the fault is cleared or ``n`` deliveries later.

An idempotent producer retries inside librdkafka until ``delivery_timeout_s``, so a down broker
surfaces as a delivery timeout: ``options`` use 3 s, ``timeout_options`` 1 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from outbound.base import Delivery
from tests.contract.channel_support import ChannelContract, lead_event
from tests.fakes.kafka_broker import KafkaBroker

TOPIC_TEMPLATE = "junction.contract.{entity}.v1"
TOPIC = "junction.contract.lead.v1"
EMAIL = "ada.lovelace@example.com"
COMPANY = "Initech Analytical Engines"
TOO_LARGE = 1_200_000  # above librdkafka's default message.max.bytes (1,000,000)


class BrokerFaults:
    """Fault knobs over one broker: oversized payloads, a stopped broker, a frozen broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self._lock = threading.Lock()
        self._too_large = 0
        self._outage: str | None = None  # "server_error" (stopped) or "hang" (frozen)
        self._outage_left = 0

    def fail_next(self, kind: str, n: int) -> None:
        """Fail the next ``n`` deliveries with ``kind``; ``n = 0`` clears it."""
        if kind not in ("client_error", "server_error", "hang"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            if kind == "client_error":
                self._too_large = max(n, 0)
                return
            if n <= 0:
                if self._outage == kind:
                    self._restore()
                return
            self._restore()
            if kind == "server_error":
                self.broker.stop()
            else:
                self.broker.pause()
            self._outage, self._outage_left = kind, n

    def _restore(self) -> None:
        outage, self._outage, self._outage_left = self._outage, None, 0
        if outage == "hang":
            self.broker.resume()
        elif outage == "server_error":
            self.broker.start()
            self.broker.create_topic(TOPIC)

    def take(self) -> bool:
        """Count one delivery against the faults; True if it must be oversized."""
        with self._lock:
            if self._outage is not None:
                if self._outage_left > 0:
                    self._outage_left -= 1
                else:
                    # the outage has had its n deliveries: this one gets a working broker
                    self._restore()
            if self._too_large > 0:
                self._too_large -= 1
                return True
            return False


def _event(delivery_id: str, pad: int = 0) -> bytes:
    event = lead_event(delivery_id, {"external_id": "L-1001", "email": EMAIL, "company": COMPANY})
    if pad:
        event["notes"] = "x" * pad
    return orjson.dumps(event)


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The Kafka channel's contract inputs, against a broker of its own."""
    with KafkaBroker() as broker:
        broker.create_topic(TOPIC)
        faults = BrokerFaults(broker)

        def delivery(delivery_id: str) -> Delivery:
            payload = _event(delivery_id, TOO_LARGE if faults.take() else 0)
            return Delivery(delivery_id, "kafka.leads", "lead.scored", payload)

        def seen_ids() -> list[str]:
            return [
                dict(msg.headers() or [])["event-id"].decode() for msg in broker.read_all(TOPIC)
            ]

        options = {
            "bootstrap_servers": broker.bootstrap,
            "topic": TOPIC_TEMPLATE,
            "delivery_timeout_s": 3,
            "close_timeout_s": 2,
        }
        try:
            yield ChannelContract(
                options=options,
                delivery=delivery,
                seen_ids=seen_ids,
                fail_next=faults.fail_next,
                timeout_options={**options, "delivery_timeout_s": 1},
                # working options hold no secret (the contract broker, tansu 0.6 with memory
                # storage, can neither create SASL users nor serve TLS; sasl_password redaction is
                # tested in tests/unit/outbound/test_kafka_channel.py), so the redaction check
                # looks for the event's personal data instead: no error or log line may carry it
                secrets=[EMAIL, COMPANY],
                bad_options=[
                    {**options, "producer_options": {"enable.idempotence": False}},
                    {**options, "producer_options": {"acks": "1"}},
                    {**options, "topic": "junction.{record_id}"},
                ],
            )
        finally:
            broker.resume()
