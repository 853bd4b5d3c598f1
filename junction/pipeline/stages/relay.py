"""The relay: a transactional outbox from the store to the stage topics.

A stage writes the messages it passes on as ``stage_relay`` rows in the same transaction as its
effects, so a message exists exactly when its effect does.  ``publish`` then sends a scope's
unpublished rows in id order through the idempotent producer, waits for every acknowledgement
and marks them published.  A scope is the input partition the rows came from (or an ingest
pipeline), and only its owner publishes it, so each subject's messages leave in the order their
inputs arrived.  After a crash the partition's next owner first publishes what the dead worker
committed but did not send; the rows it reads again insert nothing (``dedupe``).

In the steady state a worker skips the read-back: once it has sent every unpublished row of a
scope (the scope is *clean*), the rows its next batch writes there, when every one of them is new,
are all the scope holds unsent, so ``send_written`` sends them from memory, without waiting for
the broker: their acknowledgements are awaited (``settled``) just before the next batch's write
transaction, which marks them (``mark_in``; an idle worker, a revoked scope and ``close`` await
and mark them at once).  So the broker's round trip overlaps the next batch's work (ADR-0032).
On SQLite marking moves the scope's watermark over them (one row, not one update per message;
``junction.store.relay_marks``, ADR-0030), checked by the span of ids the batch's rows took
(``written_span``, ADR-0033) when one batch's rows are marked; on PostgreSQL each row is marked.
A row that was already there (the batch read again, or a former owner wrote it)
or a failed send sends the worker back to the read-back path.

The one duplicate this allows: a worker killed after it produced a row but before it marked it
published (at most its last batch of each scope) makes the scope's next owner send it again.
Stage messages carry the record id, and every consumer of them writes effects keyed by it, so a
resent message has no second effect.

When the store's encryption at rest is on (ADR-0021), a row's ``value`` (the whole stage
message: names, emails, phones) is sealed before the insert, with AES-256-GCM under the data key
of the ``jx_stage_relay`` subject (a store-level key in ``data_keys``, wrapped by the KEK like
the channel secrets' key, so ``junction keys rotate`` re-wraps it), bound to the table and the
row's ``dedupe`` key; ``publish`` opens it just before producing.  A sealed value that was
altered or moved to another row raises :class:`DecryptionError` and nothing of the chunk is
sent or marked (the worker's batch fails; never a garbled or skipped message).  The Kafka
message itself stays in clear (encrypting topics is the broker's business).  ``headers`` (the
pipeline, the record id, the stage, a trace id) and ``key`` stay in clear like the record ids of
the other tables; erasure finds rows by ``key``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import orjson
from confluent_kafka import KafkaError, Message, Producer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, and_, delete, or_, select

from connectors.kafka.client import classify
from junction.core.errors import DecryptionError, UnavailableError
from junction.store import tables as t
from junction.store.crypto import (
    BYTES_PREFIX,
    NONCE_BYTES,
    associated,
    open_blob,
    seal_bytes,
    split_bytes,
)
from junction.store.relay_marks import Span, advance_all, mark_rows, unpublished, uses_watermarks
from junction.store.repo import Store

RELAY_COLS = ("scope", "topic", "key", "value", "headers", "dedupe", "created_at")
PUBLISH_CHUNK = 5000
POLL_EVERY = 64  # messages produced between two serves of the producer's events
# published rows are kept this long (seconds) so a late re-read still finds their dedupe keys
RETENTION_S = 24 * 3600.0

RelayRow = tuple[str, str, str, bytes, str | None, str, float]


class Marks(NamedTuple):
    """Rows sent from memory, to be marked published: one batch's, or what a worker's next
    write marks (``Relay.settled``)."""

    rows: list[tuple[str, str]]  # (scope, dedupe key) of each row
    span: Span | None  # the ids they fill, when they are one batch's rows (else None)


# the store-level data key that seals relay values (``data_keys``; nobody's personal key)
SUBJECT = "jx_stage_relay"
TABLE = "stage_relay"
_SEALED = BYTES_PREFIX + SUBJECT.encode("ascii") + b":"


def relay_row(
    scope: str,
    topic: str,
    key: str,
    value: bytes,
    headers: dict[str, str],
    dedupe: str,
    at: float | None = None,
) -> RelayRow:
    """One row for ``stage_relay`` (``dedupe`` makes a replayed input insert nothing), written
    ``at`` (default: now; a batch passes one time for all its rows)."""
    return (
        scope,
        topic,
        key,
        value,
        orjson.dumps(headers).decode(),
        dedupe,
        time.time() if at is None else at,
    )


def insert_rows(store: Store, conn: Connection, rows: Sequence[RelayRow]) -> bool:
    """Insert relay rows in the caller's transaction, skipping ones already there.

    With the store's encryption at rest on, each value is sealed first (``seal_rows``).
    Returns whether every row was new (none was there from an earlier read of its input).

    Raises:
        KeyUnavailableError: Encryption is on but the store's KEK is missing.
    """
    privacy = store.privacy(conn)
    if privacy is not None and rows:
        rows = seal_rows(_relay_key(privacy, conn), rows)
    return store.insert_many(conn, t.stage_relay, RELAY_COLS, rows) == len(rows)


def _relay_key(privacy: Any, conn: Connection) -> AESGCM:
    aead = privacy.keyring.keys(conn, [SUBJECT], create=True).get(SUBJECT)
    if aead is None:  # never erased: erasure destroys people's subjects only
        raise DecryptionError("the stage relay's data key is destroyed")
    return cast(AESGCM, aead)


def seal_rows(aead: AESGCM, rows: Sequence[RelayRow]) -> list[RelayRow]:
    """``rows`` with their values sealed under ``aead``, each bound to its ``dedupe`` key."""
    nonces = os.urandom(NONCE_BYTES * len(rows))
    out = []
    for i, (scope, topic, key, value, headers, dedupe, at) in enumerate(rows):
        nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
        sealed = seal_bytes(aead, SUBJECT, nonce, value, _aad(dedupe))
        out.append((scope, topic, key, sealed, headers, dedupe, at))
    return out


def open_value(aead: AESGCM | None, value: bytes, dedupe: str) -> bytes:
    """The stage message of a sealed relay value (a value written in clear, as it was).

    A value written before encryption was turned on is a JSON object (``{...}``) and is sent
    as it is; anything else must open under the relay's key.

    Raises:
        DecryptionError: The value was altered, moved to another row, or is malformed.
    """
    if value.startswith(_SEALED):
        if aead is None:
            raise DecryptionError("a stage relay value is sealed but the relay has no data key")
        _subject, blob = split_bytes(value)
        return open_blob(aead, blob, _aad(dedupe), table=TABLE)
    if value.startswith(b"{"):
        return value
    raise DecryptionError(
        "a stage relay value is neither sealed nor a stage message (damaged); nothing was sent",
        context={"table": TABLE},
    )


def _aad(dedupe: str) -> bytes:
    return associated(TABLE, dedupe, SUBJECT)


class Relay:
    """Publishes relay rows for the scopes this worker owns."""

    def __init__(self, store: Store, producer: Producer, *, timeout_s: float) -> None:
        """``producer`` must be idempotent with acks=all (``bus.make_producer``)."""
        self.store = store
        self.producer = producer
        self.timeout_s = timeout_s
        self.published = 0
        # scopes whose unpublished rows this worker has all sent: the rows it inserts next in
        # them (every one new) are all there is to send, and can go from memory
        self.clean: set[str] = set()
        # (scope, dedupe key) of rows produced from memory whose acknowledgements nobody has
        # awaited yet (``settle``), and of rows acknowledged but not yet marked published, batch
        # by batch as ``send_written`` had them
        self._in_flight: list[Marks] = []
        self._unmarked: list[Marks] = []
        # delivery failures the producer reported, until the next wait for acknowledgements
        self._errors: list[KafkaError] = []
        # SQLite: move each scope's watermark over them; PostgreSQL: mark each row
        self.watermarks = uses_watermarks(store.dialect)
        self._lock = threading.Lock()

    def pending(self, scopes: Iterable[str]) -> int:
        """How many rows of ``scopes`` wait to be published."""
        scopes = list(scopes)
        if not scopes:
            return 0
        with self.store.begin() as conn:
            rows = conn.execute(
                select(t.stage_relay.c.id).where(t.stage_relay.c.scope.in_(scopes), unpublished())
            ).all()
        return len(rows)

    def publish(self, scopes: Iterable[str]) -> int:
        """Send every unpublished row of ``scopes``, in id order; return how many.

        Raises:
            UnavailableError: the broker did not acknowledge a row in time (nothing is marked;
                the next call sends the scope's rows again, in order).
            AuthError / FatalError: the broker refused a row.
            DecryptionError: a sealed value was altered or moved to another row (nothing of
                its chunk is sent or marked; the rows before it in earlier chunks were).
            KeyUnavailableError: encryption is on but the store's KEK is missing.
        """
        scopes = sorted(set(scopes))
        if not scopes:
            return 0
        with self._lock:
            self._settle()  # the rows sent from memory go out before any read back
            self._flush_marks()  # rows sent but unmarked would be read back and sent again
            try:
                sent = self._publish(scopes)
            except BaseException:
                self.clean.difference_update(scopes)
                raise
            self.clean.update(scopes)
            return sent

    def _publish(self, scopes: list[str]) -> int:
        sent = 0
        while True:
            with self.store.begin() as conn:
                privacy = self.store.privacy(conn)
                c = t.stage_relay.c
                cols = [c.id, c.topic, c.key, c.value, c.headers]
                if privacy is not None:
                    cols.append(c.dedupe)
                rows: Sequence[Any] = conn.execute(
                    select(*cols)
                    .where(c.scope.in_(scopes), unpublished())
                    .order_by(c.id)
                    .limit(PUBLISH_CHUNK)
                ).all()
                if rows and privacy is not None:
                    aead = privacy.keyring.keys(conn, [SUBJECT], create=False).get(SUBJECT)
            if not rows:
                return sent
            if privacy is not None:
                # open every value before sending any: a damaged one sends nothing
                rows = [
                    (i, topic, key, open_value(aead, bytes(value), dedupe), headers)
                    for i, topic, key, value, headers, dedupe in rows
                ]
            self._send(rows)
            self._mark([r[0] for r in rows])
            sent += len(rows)
            self.published += len(rows)
            if len(rows) < PUBLISH_CHUNK:
                return sent

    def send_written(self, rows: Sequence[RelayRow], span: Span | None = None) -> int:
        """Produce rows this worker has just inserted, from memory; return how many.

        Only for rows that were all new (``insert_rows`` said so) in ``clean`` scopes: they
        are then exactly their scopes' unpublished rows, in id order, so nothing is read back
        (or opened, when sealed).  It does not wait for the broker: the rows are *in flight*
        until ``settle`` (called by ``settled``, ``publish``, ``flush_marks`` and ``forget``)
        has their acknowledgements, so the wait overlaps the worker's next batch.  They are
        then marked published in the worker's next write (``mark_in``), or by ``flush_marks``.
        On failure their scopes are no longer clean: the next ``publish`` reads them back and
        sends them, in order.  ``span`` is the ids the rows took (``written_span``), if known.

        Raises:
            AuthError / FatalError: the producer refused a row outright.
        """
        if not rows:
            return 0
        with self._lock:
            try:
                self._produce([(None, r[1], r[2], r[3], r[4]) for r in rows])
            except BaseException:
                self.clean.difference_update({r[0] for r in rows})
                raise
            self._in_flight.append(Marks([(r[0], r[5]) for r in rows], span))
            self.published += len(rows)
        return len(rows)

    def settled(self) -> Marks:
        """Wait for the rows in flight; return ``(scope, dedupe key)`` of every row sent and
        acknowledged but not marked yet, and the span of ids they fill if one batch holds them
        all (for ``mark_in``).

        Raises:
            UnavailableError: the broker did not acknowledge them in time.
            AuthError / FatalError: the broker refused one.  Either way their scopes are no
                longer clean, so the next ``publish`` reads them back and sends them, in order.
        """
        with self._lock:
            self._settle()
            return self._to_mark()

    def _to_mark(self) -> Marks:
        if len(self._unmarked) == 1:
            batch = self._unmarked[0]
            return Marks(list(batch.rows), batch.span)
        # several batches' spans leave other workers' rows between them: no span
        return Marks([row for batch in self._unmarked for row in batch.rows], None)

    def _settle(self) -> None:
        if not self._in_flight:
            return
        batches, self._in_flight = self._in_flight, []
        try:
            self._await()
        except BaseException:
            self.clean.difference_update({scope for b in batches for scope, _ in b.rows})
            raise
        self._unmarked.extend(batches)

    def mark_in(
        self, conn: Connection, sent: Sequence[tuple[str, str]], span: Span | None = None
    ) -> None:
        """Mark the rows ``sent`` (``(scope, dedupe)``) published, in the caller's transaction.

        On SQLite each scope's watermark moves over them when they are all it holds unsent
        above it (``relay_marks.advance``; ``span``, the ids the rows ``sent`` fill and only
        they, lets it check that without reading them); otherwise, and on PostgreSQL, each row
        is marked.  Call it before the transaction inserts new rows in those scopes.  After it
        commits, call ``marked(len(sent))``.
        """
        if self.watermarks:
            advance_all(conn, sent, span)
        else:
            mark_rows(conn, t.stage_relay.c.dedupe, [d for _, d in sent])

    def marked(self, n: int) -> None:
        """The first ``n`` unmarked rows were marked by a committed ``mark_in``."""
        with self._lock:
            self._drop_marked(n)

    def _drop_marked(self, n: int) -> None:
        batches = self._unmarked
        while batches and n >= len(batches[0].rows):
            n -= len(batches.pop(0).rows)
        if n and batches:  # part of a batch was marked: the rest fills no known span
            batches[0] = Marks(batches[0].rows[n:], None)

    def flush_marks(self) -> None:
        """Await the rows in flight, then mark every acknowledged row published now, in a
        transaction of its own.

        Raises:
            UnavailableError: the store is away (the rows stay to be marked later; if this
                worker dies first, the scope's next owner sends them again), or the broker
                did not acknowledge the rows in flight in time.
            AuthError / FatalError: the broker refused a row in flight (its scope is no longer
                clean; the rows acknowledged are marked all the same).
        """
        with self._lock:
            try:
                self._settle()
            finally:  # what was acknowledged is marked even when the rest was not
                self._flush_marks()

    def _flush_marks(self) -> None:
        if not self._unmarked:
            return
        marks = self._to_mark()
        with self.store.begin() as conn:
            self.mark_in(conn, marks.rows, marks.span)
        self._drop_marked(len(marks.rows))

    def forget(self, scopes: Iterable[str]) -> None:
        """``scopes`` went to another worker: no longer clean, and every sent row is marked.

        Raises:
            UnavailableError: as ``flush_marks``.
        """
        with self._lock:
            try:
                self._settle()
            finally:
                self.clean.difference_update(scopes)
                self._flush_marks()

    def _send(self, rows: Sequence[Any]) -> None:
        """Produce ``rows`` and wait until the broker acknowledged every one."""
        self._produce(rows)
        self._await()

    def _produce(self, rows: Sequence[Any]) -> None:
        """Hand ``rows`` (``(id, topic, key, value, headers)``) to the producer, in order."""
        producer, report = self.producer, self._report
        for n, (_id, topic, key, value, headers) in enumerate(rows, 1):
            hdrs = orjson.loads(headers) if headers else None  # a dict: produce takes one
            while True:
                try:
                    producer.produce(
                        topic, value=bytes(value), key=key, headers=hdrs, on_delivery=report
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    producer.poll(0.05)
            if not n % POLL_EVERY:
                producer.poll(0)

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def _await(self) -> None:
        """Wait until the producer's queue is empty; raise the first failure it reported.

        The producer reports failed deliveries only (``delivery.report.only.error``): once
        ``flush`` has emptied its queue, a message without a report was acknowledged.
        """
        left = self.producer.flush(self.timeout_s)
        errors, self._errors = self._errors, []
        if errors:
            raise classify(errors[0], what="relay publish")
        if left:
            raise UnavailableError(
                "the broker did not acknowledge the stage messages in time; will retry",
                context={"unacknowledged": left},
            )

    def _mark(self, ids: list[int]) -> None:
        with self.store.begin() as conn:
            mark_rows(conn, t.stage_relay.c.id, ids)

    def prune(self, older_than_s: float = RETENTION_S) -> int:
        """Delete rows published more than ``older_than_s`` ago; return how many.

        A row published by its scope's watermark counts from when it was written.
        """
        cutoff = time.time() - older_than_s
        c = t.stage_relay.c
        by_mark = and_(c.published_at.is_(None), c.created_at < cutoff, ~unpublished())
        with self.store.begin() as conn:
            n = conn.execute(
                delete(t.stage_relay).where(or_(c.published_at < cutoff, by_mark))
            ).rowcount
        return int(n or 0)
