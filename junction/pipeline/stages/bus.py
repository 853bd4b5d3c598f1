"""The Kafka clients of a stage worker: one group consumer, one idempotent producer, topics.

The consumer never commits on its own (``enable.auto.commit`` and ``enable.auto.offset.store``
off): the worker commits a batch's offsets only after the store committed the batch's effects
and the relay rows of what it passes on (the transactional outbox: the rows are sent, by this
worker or by the partition's next owner, whatever happens to the consumer).  Those commits are
asynchronous: a lost one makes the next owner read a batch again, which writes nothing new
(ADR-0032).  The worker commits synchronously when its partitions are revoked and when it
closes.  The producer is idempotent with ``acks=all``, so a
retried send neither duplicates nor reorders a partition's messages.  Errors are translated by
the Kafka source's ``classify`` (one taxonomy for every Kafka client of Junction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from connectors.kafka.client import classify
from junction.core.errors import InternalError, JunctionError, RetryableError
from junction.core.logging import get_logger
from junction.pipeline.config import BusConfig

_log = logging.getLogger("junction.stages.librdkafka")
log = get_logger(__name__)
SESSION_TIMEOUT_MS = 10_000
# a batch (transaction + publish) takes seconds at most; a member that stops polling this long
# is dead or stuck, and its partitions go to the others
MAX_POLL_INTERVAL_MS = 120_000


def settings(bus: BusConfig) -> dict[str, Any]:
    """The settings every client shares: brokers, the configured extras (security)."""
    return {"bootstrap.servers": bus.bootstrap_servers, "logger": _log, **bus.options}


def make_consumer(
    bus: BusConfig,
    group: str,
    on_assign: Callable[[Any, list[TopicPartition]], None],
    on_revoke: Callable[[Any, list[TopicPartition]], None],
    topics: list[str],
) -> Consumer:
    """A group member subscribed to ``topics`` that commits only when told to.

    The heartbeat follows the session timeout in effect: a quarter of it, whether it is the
    default or one set in ``bus.options`` (a heartbeat slower than the session would let the
    coordinator drop a live member), unless the options set the heartbeat too.
    """
    conf = {
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": _heartbeat_ms(bus.options.get("session.timeout.ms")),
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        **settings(bus),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range,roundrobin",
        "enable.partition.eof": False,
        "on_commit": _on_commit,
    }
    consumer = Consumer(conf)
    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
    return consumer


def _on_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """Log an asynchronous offset commit that failed (served inside ``consume``).

    Nothing else is needed: a later commit moves the same partitions further, or their next
    owner reads the batch again and, its effects and relay rows being keyed, writes nothing new.
    """
    if err is None or err.code() == KafkaError._NO_OFFSET:
        return
    # refused because the group rebalanced under it: expected whenever members come and go
    report = log.info if err.code() in _REBALANCED else log.warning
    report(
        "an asynchronous offset commit failed; the batch may be read again, with no second effect",
        kafka_error=err.name(),
        partitions=len(partitions),
    )


def _heartbeat_ms(session: object) -> int:
    """A quarter of the session timeout in effect (librdkafka rejects a malformed one itself)."""
    try:
        session_ms = SESSION_TIMEOUT_MS if session is None else int(str(session))
    except ValueError:
        session_ms = SESSION_TIMEOUT_MS
    return max(100, session_ms // 4)


def make_producer(bus: BusConfig) -> Producer:
    """The relay's idempotent producer (acks=all, ordered retries)."""
    return Producer(
        {
            "linger.ms": 5,
            "compression.type": "lz4",
            **settings(bus),
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": int(bus.publish_timeout_s * 1000),
            # the relay counts what flush leaves unsent; only failures need a report
            "delivery.report.only.error": True,
        }
    )


def ensure_topics(bus: BusConfig, topics: Iterable[str], *, timeout_s: float = 15.0) -> None:
    """Create the topics that do not exist yet (``bus.partitions`` each).

    Raises:
        UnavailableError / AuthError / FatalError: the brokers are away or refuse.
    """
    admin = AdminClient(settings(bus))
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise classify(exc.args[0], what="metadata") from exc
    missing = sorted(set(topics) - set(meta.topics))
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=bus.partitions, replication_factor=bus.replication_factor)
            for t in missing
        ],
        operation_timeout=timeout_s,
    )
    for fut in futures.values():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker was first
                raise classify(err, what="create topic") from exc


# the group moved on while a batch was processed (a member died or joined): the commit is
# refused, the partitions have or will have a new owner, who reads the batch again from the
# last committed offset
_REBALANCED = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,
    }
)


def commit(consumer: Consumer, offsets: dict[tuple[str, int], int], *, wait: bool = True) -> None:
    """Commit ``{(topic, partition): next offset}``, synchronously unless ``wait`` is False.

    An asynchronous commit raises nothing here: a failure is logged when the consumer serves
    its result (``_on_commit``).

    Raises:
        RetryableError: code ``rebalanced``: the group rebalanced under the batch; it is read
            again by whoever owns its partitions next (its effects are idempotent).
        JunctionError: the commit failed otherwise (the batch is read again likewise).
    """
    if not offsets:
        return
    tps = [TopicPartition(t, p, off) for (t, p), off in offsets.items()]
    try:
        if not wait:
            consumer.commit(offsets=tps, asynchronous=True)
            return
        consumer.commit(offsets=tps, asynchronous=False)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        if err.code() in _REBALANCED:
            raise RetryableError(
                "the consumer group rebalanced before the batch's offsets were committed; "
                "its partitions' next owner reads it again",
                code="rebalanced",
                context={"kafka_error": err.name()},
            ) from exc
        raise classify(err, what="offset commit") from exc


def fetch_positions(consumer: Consumer) -> list[tuple[TopicPartition, int, int]]:
    """Each assigned partition with its low and high watermarks as its latest fetch saw them.

    The partition's ``offset`` is the next one this consumer reads (negative before it read
    any); a watermark is negative when no fetch answered for the partition yet.  Nothing is
    asked of the broker: librdkafka keeps both from its fetches.  (Not a ListOffsets query:
    tansu answers that with the base offset of the last record batch plus one, short of the
    log's end.)

    Raises:
        KafkaException: the client refused (the caller classifies it or ignores it).
    """
    assignment = consumer.assignment()
    if not assignment:
        return []
    out = []
    for tp in consumer.position(assignment):
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        out.append((tp, low, high))
    return out


def unread(consumer: Consumer, *, timeout_s: float = 5.0) -> int:
    """Messages on the consumer's assigned partitions it has not read yet, as its fetches saw.

    Per partition: the high watermark of its latest fetch response minus the next offset this
    consumer reads: its position, else the group's committed offset (asked of the broker),
    else the low watermark (stage consumers start at the earliest).  A partition no fetch has
    answered for yet counts as one unread message: it is starting, not caught up.

    Raises:
        JunctionError: the broker did not answer for the committed offsets (classified).
    """
    try:
        seen = fetch_positions(consumer)
        nxt = {(tp.topic, tp.partition): tp.offset for tp, _low, _high in seen}
        unknown = [tp for tp, _low, _high in seen if tp.offset < 0]
        if unknown:
            for tp in consumer.committed(unknown, timeout=timeout_s):
                nxt[(tp.topic, tp.partition)] = tp.offset
        total = 0
        for tp, low, high in seen:
            if high < 0:
                total += 1
                continue
            at = nxt[(tp.topic, tp.partition)]
            total += max(0, high - (at if at >= 0 else max(low, 0)))
    except KafkaException as exc:
        raise classify(exc.args[0], what="watermark query") from exc
    return total


def consumer_error(err: KafkaError) -> JunctionError | None:
    """The error a consumed message carries, or None when it is not worth stopping for."""
    if err.code() in (KafkaError._PARTITION_EOF, KafkaError._NO_OFFSET):
        return None
    return classify(err, what="consumer")


def position(msg: Message) -> tuple[str, int, int]:
    """A consumed message's topic, partition and offset (set on every consumed message)."""
    topic, part, off = msg.topic(), msg.partition(), msg.offset()
    if topic is None or part is None or off is None:
        raise InternalError("a consumed Kafka message has no topic, partition or offset")
    return topic, part, off


def header(msg: Message, name: str) -> str | None:
    """One string header of a consumed message, if it has it."""
    raw = cast("list[tuple[str, bytes | None]] | None", msg.headers())
    for key, value in raw or []:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
