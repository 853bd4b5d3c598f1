"""The Kafka channel: each delivery becomes one record on a topic, keyed by its record id.

One attempt per ``send``: the record goes to the shared idempotent producer and the send waits for
the broker's acknowledgement (``acks=all``) or the delivery timeout; the channel never retries on
its own (librdkafka's internal, idempotent retries aside), the delivery worker does.  Retries of one
delivery carry the same ``event-id`` header, so consumers dedupe on it.
"""

from __future__ import annotations

import string
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from junction.core.errors import FatalError, InternalError
from outbound.base import Delivery, Receipt
from outbound.config_errors import validate_config
from outbound.delivery_headers import refuse_reserved
from outbound.kafka.client import ProducerClient
from outbound.kafka.config import MAX_TOPIC_LEN, TOPIC_CHARS, KafkaConfig
from outbound.lifecycle import ClosesOnExit

# headers the channel owns: a delivery header may not replace them
RESERVED_HEADERS = frozenset({"event-id", "event-type", "content-type"})
RECORD_FIELDS = ("record_id", "entity", "record", "score")
# deliveries.remote_id holds 128 characters; a longer "<topic>/<partition>@<offset>" keeps its end
MAX_REMOTE_ID = 128


class KafkaChannel(ClosesOnExit):
    """Produce deliveries to one Kafka topic (or a topic per entity, from a template).

    Args:
        config: The channel config, or a mapping validated into one.

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
    """

    name: ClassVar[str] = "kafka"
    config_model: ClassVar[type[KafkaConfig]] = KafkaConfig

    def __init__(self, config: KafkaConfig | Mapping[str, Any]) -> None:
        self.config = config = validate_config(KafkaConfig, config, kind="kafka")
        fields = [name for _, name, _, _ in string.Formatter().parse(config.topic) if name]
        self._topic_fields = frozenset(fields)
        self._client = ProducerClient(
            config.librdkafka(),
            timeout_s=config.delivery_timeout_s,
            close_timeout_s=config.close_timeout_s,
        )

    def __repr__(self) -> str:
        return (
            f"KafkaChannel(topic={self.config.topic!r}, servers={self.config.bootstrap_servers!r})"
        )

    def _event(self, delivery: Delivery) -> dict[str, Any]:
        try:
            event = orjson.loads(delivery.payload)
        except orjson.JSONDecodeError:
            raise InternalError(
                "delivery payload is not JSON", context={"channel": delivery.channel}
            ) from None
        if not isinstance(event, dict):
            raise InternalError(
                "delivery payload is not a JSON object", context={"channel": delivery.channel}
            )
        return event

    def _topic(self, delivery: Delivery, event: Mapping[str, Any]) -> str:
        if not self._topic_fields:
            return self.config.topic
        values: dict[str, str] = {}
        for name in self._topic_fields:
            raw = delivery.event_type if name == "type" else event.get(name)
            value = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
            if not value or not TOPIC_CHARS.match(value):
                raise FatalError(
                    f"the event has no usable {name!r} for the topic template "
                    f"{self.config.topic!r}",
                    context={"channel": delivery.channel},
                    code="topic_unresolved",
                )
            values[name] = value
        topic = self.config.topic.format_map(values)
        if len(topic) > MAX_TOPIC_LEN:
            raise FatalError(
                f"the topic built from {self.config.topic!r} is longer than {MAX_TOPIC_LEN}",
                context={"channel": delivery.channel},
                code="topic_unresolved",
            )
        return topic

    def _key(self, event: Mapping[str, Any]) -> bytes | None:
        raw = event.get(self.config.key_field)
        if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int):
            return None
        return str(raw).encode("utf-8")

    def _value(self, delivery: Delivery, event: Mapping[str, Any]) -> bytes:
        if self.config.value == "event":
            return delivery.payload
        return orjson.dumps({name: event.get(name) for name in RECORD_FIELDS})

    def _headers(self, delivery: Delivery) -> list[tuple[str, bytes]]:
        if not delivery.delivery_id:
            raise InternalError("delivery_id is empty", context={"channel": delivery.channel})
        headers = [
            ("event-id", delivery.delivery_id.encode("utf-8")),
            ("event-type", delivery.event_type.encode("utf-8")),
            ("content-type", b"application/json"),
        ]
        if delivery.headers:
            refuse_reserved(delivery, RESERVED_HEADERS)
            headers.extend((k, v.encode("utf-8")) for k, v in delivery.headers.items())
        return headers

    async def send(self, delivery: Delivery) -> Receipt:
        """Produce one delivery and wait for the broker's acknowledgement.

        Args:
            delivery: The message; its payload is the event JSON, its ``delivery_id`` becomes the
                ``event-id`` header.

        Returns:
            A Receipt with ``remote_id = "<topic>/<partition>@<offset>"`` (its last 128
            characters) and the three parts in ``detail``.

        Raises:
            InternalError: The payload is not a JSON object or a header clashes.
            FatalError: The topic template cannot be filled, or Kafka rejected the record for
                good (too large, invalid, unknown topic).
            AuthError: Kafka refused the credentials or the topic's ACLs.
            RateLimitedError: The producer's local queue is full.
            UnavailableError: Brokers down or not enough replicas (or the producer was replaced).
            RemoteTimeoutError: No acknowledgement within ``delivery_timeout_s``.
            ConfigError: librdkafka refused the producer settings.
        """
        event = self._event(delivery)
        topic = self._topic(delivery, event)
        started = time.perf_counter()
        delivered = await self._client.produce(
            topic,
            key=self._key(event),
            value=self._value(delivery, event),
            headers=self._headers(delivery),
        )
        duration_ms = (time.perf_counter() - started) * 1000.0
        remote_id = f"{delivered.topic}/{delivered.partition}@{delivered.offset}"
        return Receipt(
            delivery_id=delivery.delivery_id,
            remote_id=remote_id[-MAX_REMOTE_ID:],
            duration_ms=duration_ms,
            detail={
                "topic": delivered.topic,
                "partition": delivered.partition,
                "offset": delivered.offset,
            },
        )

    async def aclose(self) -> None:
        """Flush what is in flight (at most ``close_timeout_s``) and close; safe to call twice."""
        await self._client.aclose()
