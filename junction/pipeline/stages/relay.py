"""The relay: a transactional outbox from the store to the stage topics.

A stage writes the messages it passes on as ``stage_relay`` rows in the same transaction as its
effects, so a message exists exactly when its effect does.  ``publish`` then sends a scope's
unpublished rows in id order through the idempotent producer, waits for every acknowledgement
and marks them published.  A scope is the input partition the rows came from (or an ingest
pipeline), and only its owner publishes it, so each subject's messages leave in the order their
inputs arrived.  After a crash the partition's next owner first publishes what the dead worker
committed but did not send; the rows it reads again insert nothing (``dedupe``).

The one duplicate this allows: a worker killed after the broker acknowledged a row but before
it marked it published sends it again.  Stage messages carry the record id, and every consumer
of them writes effects keyed by it, so a resent message has no second effect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy import Connection, delete, select, update

from connectors.kafka.client import classify
from junction.core.errors import UnavailableError
from junction.store import tables as t
from junction.store.repo import Store

RELAY_COLS = ("scope", "topic", "key", "value", "headers", "dedupe", "created_at")
PUBLISH_CHUNK = 5000
# published rows are kept this long (seconds) so a late re-read still finds their dedupe keys
RETENTION_S = 24 * 3600.0

RelayRow = tuple[str, str, str, bytes, str | None, str, float]


def relay_row(
    scope: str, topic: str, key: str, value: bytes, headers: dict[str, str], dedupe: str
) -> RelayRow:
    """One row for ``stage_relay`` (``dedupe`` makes a replayed input insert nothing)."""
    return (scope, topic, key, value, orjson.dumps(headers).decode(), dedupe, time.time())


def insert_rows(store: Store, conn: Connection, rows: Sequence[RelayRow]) -> None:
    """Insert relay rows in the caller's transaction, skipping ones already there."""
    store.insert_many(conn, t.stage_relay, RELAY_COLS, rows)


class Relay:
    """Publishes relay rows for the scopes this worker owns."""

    def __init__(self, store: Store, producer: Producer, *, timeout_s: float) -> None:
        """``producer`` must be idempotent with acks=all (``bus.make_producer``)."""
        self.store = store
        self.producer = producer
        self.timeout_s = timeout_s
        self.published = 0
        self._lock = threading.Lock()

    def pending(self, scopes: Iterable[str]) -> int:
        """How many rows of ``scopes`` wait to be published."""
        scopes = list(scopes)
        if not scopes:
            return 0
        with self.store.begin() as conn:
            rows = conn.execute(
                select(t.stage_relay.c.id).where(
                    t.stage_relay.c.scope.in_(scopes), t.stage_relay.c.published_at.is_(None)
                )
            ).all()
        return len(rows)

    def publish(self, scopes: Iterable[str]) -> int:
        """Send every unpublished row of ``scopes``, in id order; return how many.

        Raises:
            UnavailableError: the broker did not acknowledge a row in time (nothing is marked;
                the next call sends the scope's rows again, in order).
            AuthError / FatalError: the broker refused a row.
        """
        scopes = sorted(set(scopes))
        if not scopes:
            return 0
        sent = 0
        with self._lock:
            while True:
                with self.store.begin() as conn:
                    rows = conn.execute(
                        select(
                            t.stage_relay.c.id,
                            t.stage_relay.c.topic,
                            t.stage_relay.c.key,
                            t.stage_relay.c.value,
                            t.stage_relay.c.headers,
                        )
                        .where(
                            t.stage_relay.c.scope.in_(scopes),
                            t.stage_relay.c.published_at.is_(None),
                        )
                        .order_by(t.stage_relay.c.id)
                        .limit(PUBLISH_CHUNK)
                    ).all()
                if not rows:
                    return sent
                self._send(rows)
                self._mark([r[0] for r in rows])
                sent += len(rows)
                self.published += len(rows)
                if len(rows) < PUBLISH_CHUNK:
                    return sent

    def _send(self, rows: Sequence[Any]) -> None:
        errors: list[KafkaError] = []
        acked = 0

        def report(err: KafkaError | None, _msg: Message) -> None:
            nonlocal acked
            if err is None:
                acked += 1
            else:
                errors.append(err)

        producer = self.producer
        for _id, topic, key, value, headers in rows:
            hdrs = list(orjson.loads(headers).items()) if headers else None
            while True:
                try:
                    producer.produce(
                        topic, value=bytes(value), key=key, headers=hdrs, on_delivery=report
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    producer.poll(0.05)
            producer.poll(0)
        left = producer.flush(self.timeout_s)
        if errors:
            raise classify(errors[0], what="relay publish")
        if left or acked < len(rows):
            raise UnavailableError(
                "the broker did not acknowledge the stage messages in time; will retry",
                context={"unacknowledged": len(rows) - acked},
            )

    def _mark(self, ids: list[int]) -> None:
        now = time.time()
        with self.store.begin() as conn:
            for i in range(0, len(ids), 1000):
                conn.execute(
                    update(t.stage_relay)
                    .where(t.stage_relay.c.id.in_(ids[i : i + 1000]))
                    .values(published_at=now)
                )

    def prune(self, older_than_s: float = RETENTION_S) -> int:
        """Delete rows published more than ``older_than_s`` ago; return how many."""
        cutoff = time.time() - older_than_s
        with self.store.begin() as conn:
            n = conn.execute(
                delete(t.stage_relay).where(t.stage_relay.c.published_at < cutoff)
            ).rowcount
        return int(n or 0)
