"""Kafka tombstones for an erased subject: a null-value message per key the subject was sent under.

Compacted topics drop every earlier message of a key once its tombstone is compacted; consumers
that keep state by key (a CRM mirror, a cache) delete it when they see the null value.  Two
kinds of topics carry a subject's records:

* **Kafka channels** (``kafka.*`` in ``channels``): the topic is the channel's topic (its
  template filled from the delivered event) and the key is the event's ``key_field``
  (``record_id`` by default), exactly as ``outbound.kafka`` produced it;
* **stage topics** (the ``bus`` section): ``<prefix>.raw|canonical|scored.<entity>.v1``, keyed by
  the subject key ``<pipeline>:<source key without @version>`` (ADR-0018).

``tombstones`` produces them with the channel's own idempotent producer (``acks=all``) and waits
for every acknowledgement; any failure raises, so the erasure's transaction rolls back and the
erasure can be run again (tombstones are idempotent).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from junction.store.erasure import Found, record_stage_keys
from outbound.kafka.client import ProducerClient
from outbound.kafka.config import MAX_TOPIC_LEN, TOPIC_CHARS, KafkaConfig

STAGES = ("raw", "canonical", "scored")  # junction.pipeline.stages.topics.STAGES


@dataclass(frozen=True)
class Bus:
    """Where the stage topics live (the ``bus`` section's cluster and topic prefix)."""

    bootstrap_servers: str
    topic_prefix: str
    options: Mapping[str, str | int | float | bool]
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Cluster:
    """One cluster's producer settings and the tombstones it gets."""

    conf: dict[str, Any]
    timeout_s: float
    targets: frozenset[tuple[str, bytes]]  # (topic, key)


def plan(
    found: Found, *, channels: Mapping[str, Mapping[str, Any]], bus: Bus | None = None
) -> list[Cluster]:
    """The tombstones ``found`` needs, grouped by cluster."""
    out: list[Cluster] = []
    for name, raw in channels.items():
        if not name.startswith("kafka."):
            continue
        # as build_channels: these two are the worker's, not the channel's options
        config = KafkaConfig.model_validate(
            {k: v for k, v in raw.items() if k not in ("type", "max_in_flight")}
        )
        targets = set()
        for d in found.deliveries:
            if d.channel != name or d.payload is None:
                continue
            target = _channel_target(config, d.event_type, d.payload)
            if target is not None:
                targets.add(target)
        if targets:
            out.append(Cluster(config.librdkafka(), config.delivery_timeout_s, frozenset(targets)))
    if bus is not None and found.records:
        # every key form a record's stage messages may have (a mapping's source key, or the
        # connector's), on every stage topic of its entity
        targets = {
            (f"{bus.topic_prefix}.{stage}.{r.entity}.v1", key.encode())
            for r in found.records
            for key in record_stage_keys(r.pipeline, r.id, r.source_key)
            for stage in STAGES
        }
        conf = {
            **dict(bus.options),
            "bootstrap.servers": bus.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": max(1, round(bus.timeout_s * 1000)),
        }
        out.append(Cluster(conf, bus.timeout_s, frozenset(targets)))
    return out


def _channel_target(config: KafkaConfig, event_type: str, payload: str) -> tuple[str, bytes] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    raw_key = event.get(config.key_field)
    if raw_key is None or isinstance(raw_key, bool) or not isinstance(raw_key, str | int):
        return None  # produced without a key: nothing to compact away
    fields = {n for _, n, _, _ in string.Formatter().parse(config.topic) if n}
    values: dict[str, str] = {}
    for name in fields:
        value = event_type if name == "type" else event.get(name)
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if not text or not TOPIC_CHARS.match(text):
            return None
        values[name] = text
    topic = config.topic.format_map(values) if fields else config.topic
    if len(topic) > MAX_TOPIC_LEN:
        return None
    return topic, str(raw_key).encode("utf-8")


def hook(*, channels: Mapping[str, Mapping[str, Any]], bus: Bus | None) -> Callable[[Found], int]:
    """An ``erase(before_commit=...)`` that tombstones what was found on its Kafka topics."""

    def produce(found: Found) -> int:
        return tombstones(plan(found, channels=channels, bus=bus))

    return produce


def tombstones(clusters: Sequence[Cluster]) -> int:
    """Produce every tombstone and wait for the acknowledgements; return how many.

    Raises:
        JunctionError: A broker refused or did not acknowledge one (classified as the Kafka
            channel classifies its errors).
    """
    if not clusters:
        return 0
    return asyncio.run(_produce_all(clusters))


async def _produce_all(clusters: Sequence[Cluster]) -> int:
    n = 0
    for cluster in clusters:
        client = ProducerClient(cluster.conf, timeout_s=cluster.timeout_s, close_timeout_s=10.0)
        try:
            sends = [
                # a null value is the tombstone (ProducerClient passes it to librdkafka as is)
                client.produce(topic, key=key, value=None, headers=())
                for topic, key in sorted(cluster.targets)
            ]
            await asyncio.gather(*sends)
            n += len(sends)
        finally:
            await client.aclose()
    return n


__all__ = ["Bus", "Cluster", "hook", "plan", "tombstones"]
