"""The vendor side of the ``kafka`` source: confluent_kafka, and the schema registry over HTTP.

``GroupReader`` owns one group ``Consumer``, for one read or, when the connector keeps its member
between reads (``keep_member``), for as long as the cursor it reads from is the one its own
acknowledgements left (``resumes``).  A background thread is
the only caller of the consumer (a call from another thread waits for ``consume`` to return):
it polls, serves rebalance callbacks, commits acknowledged offsets, pauses or resumes the
partitions and notes the watermarks each fetch reported (``unread`` reads those).  Because that
thread polls every ``poll_timeout_s`` whatever the pipeline is doing, ``max.poll.interval.ms`` is
never exceeded by a slow batch; when ``max_buffered_batches`` chunks wait unread, it pauses
every assigned partition (polls then keep the membership alive but fetch nothing) and resumes
once the pipeline has taken one.

Offsets: ``enable.auto.commit`` and ``enable.auto.offset.store`` are off.  ``ack(positions)``
(called only after the store committed the batch) stores and commits those positions, for the
partitions this member still owns.  A partition's start on assignment is the read's saved cursor
the first time this read sees it, else the group's committed offset (which only ever holds
stored work), else ``auto.offset.reset`` (a kept member is given each read's cursor for the
partitions it does not own: ``set_start``).  On revoke: acknowledged offsets are committed and
read-ahead chunks are dropped (in-flight work is abandoned and read again by the new owner).

``DeadLetters`` produces poison messages with an idempotent producer and waits for the broker's
acknowledgement before the batch that skips them is handed on.

``JsonSchemaDecoder`` reads Confluent-framed JSON payloads (magic byte, schema id, JSON) and
validates them against the schema the registry holds for that id (requests + jsonschema).

Errors are translated here: authorization → AuthError; transport, all brokers down, timeouts and
other retriable errors → UnavailableError; the rest → FatalError.  Messages name the group and
the error name only; librdkafka's own text goes to ``details``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from connectors.kafka.config import KafkaConfig
from junction.core import metrics
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    JunctionError,
    RecordError,
    SchemaValidationError,
    UnavailableError,
)

_log = logging.getLogger("connectors.kafka.librdkafka")
MARKS_EVERY_S = 0.1  # how often an idle poller notes the fetched watermarks
_AUTH_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
# errors the consumer reports that do not stop a read: end of partition, a revoked commit
_BENIGN_CODES = frozenset({KafkaError._PARTITION_EOF, KafkaError._NO_OFFSET})


def classify(err: KafkaError, *, what: str) -> JunctionError:
    """Translate one librdkafka error into the taxonomy.

    Args:
        err: The error reported by the consumer, a commit or a delivery report.
        what: What failed, for the user message (no payload, no secrets).

    Returns:
        The error to raise.
    """
    code, name, details = err.code(), err.name(), err.str()
    ctx = {"kafka_error": name}
    if code in _AUTH_CODES:
        return AuthError(
            f"Kafka refused the credentials or ACLs ({what}: {name}); fix the source's security "
            "settings or the ACLs",
            details=details,
            context=ctx,
        )
    if code in _UNAVAILABLE_CODES or err.retriable():
        return UnavailableError(
            f"Kafka is unavailable ({what}: {name}); will retry", details=details, context=ctx
        )
    return FatalError(f"Kafka rejected the request ({what}: {name})", details=details, context=ctx)


def leave_grace_s(cfg: KafkaConfig) -> float:
    """How long a closing member waits for a join in progress before it leaves the group.

    A join takes about half the session on tansu, and a dead member's partitions move after the
    session plus a rebalance (~18 s with the default 10 s session): twice the session, plus 5 s.
    """
    return 2 * cfg.session_timeout_ms / 1000 + 5


def tp_key(topic: str, partition: int) -> str:
    """The cursor key of one partition: ``<topic>/<partition>``."""
    return f"{topic}/{partition}"


def parse_tp_key(key: str) -> tuple[str, int]:
    """Split a cursor key back into topic and partition.

    Raises:
        ConfigError: The key was not written by this connector.
    """
    topic, sep, part = key.rpartition("/")
    if not sep or not topic or not part.isdigit():
        raise ConfigError("the saved Kafka cursor has an unknown format")
    return topic, int(part)


def client_settings(cfg: KafkaConfig) -> dict[str, Any]:
    """The librdkafka settings every client of this connector shares (brokers, security)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "security.protocol": cfg.security_protocol,
        "logger": _log,
    }
    if cfg.sasl_mechanism is not None:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
    if cfg.username is not None and cfg.password is not None:
        conf["sasl.username"] = cfg.username
        conf["sasl.password"] = cfg.password.get_secret_value()
    return conf


@dataclass(frozen=True, slots=True)
class Polled:
    """One consumed message, as plain values (no confluent_kafka object leaves this module)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


@dataclass(slots=True)
class Chunk:
    """Messages read ahead for one batch and the positions to resume after them."""

    messages: list[Polled]
    positions: dict[str, int]
    epoch: int


@dataclass
class _State:
    """What the poller thread shares with the reader (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    assigned: set[str] = field(default_factory=set)
    # since when the member holds no assignment: joining at the start, or rejoining after a
    # rebalance took its partitions (None while it holds one, even an empty one)
    joining_since: float | None = field(default_factory=time.monotonic)
    last_message_at: float = 0.0
    epoch: int = 0
    error: JunctionError | None = None
    committed: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    fetched: dict[str, int] = field(default_factory=dict)  # next offset to read, per partition
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # fetched (low, high)
    last_problem: JunctionError | None = None  # the latest non-fatal client error (brokers down)
    pauses: int = 0  # times the partitions were paused for back-pressure
    revokes: int = 0  # rebalances that took partitions away


@dataclass
class _Confirm:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


class GroupReader:
    """One consumer-group member, for one read or, kept by the connector, for many.

    Args:
        cfg: The connector's config.
        start: The saved cursor: ``{"<topic>/<partition>": next offset}``.
    """

    def __init__(self, cfg: KafkaConfig, start: dict[str, int]) -> None:
        self.cfg = cfg
        self._start = dict(start)
        self.state = _State()
        self.chunks: queue.Queue[Chunk] = queue.Queue(maxsize=cfg.max_buffered_batches)
        # acknowledged positions, and events a caller waits on until those before are committed
        self._acks: queue.SimpleQueue[dict[str, int] | threading.Event] = queue.SimpleQueue()
        # per partition, the store's next offset as far as this member knows it (the cursor it
        # started at, then its acknowledgements; kept across a revoke); guarded by ``state.lock``
        self._resume: dict[str, int] = {}
        self._confirms: queue.SimpleQueue[_Confirm] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._pending: list[Polled] = []
        self._positions: dict[str, int] = {}
        self._unchecked: dict[str, int] = {}  # cursor starts not yet checked against the log end
        self._paused = False
        self._marks_at = 0.0  # when the poller last noted the fetched watermarks
        self.consumer = Consumer(
            {
                **client_settings(cfg),
                "group.id": cfg.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": cfg.auto_offset_reset,
                "session.timeout.ms": cfg.session_timeout_ms,
                "heartbeat.interval.ms": max(100, cfg.session_timeout_ms // 4),
                "max.poll.interval.ms": cfg.max_poll_interval_ms,
                "partition.assignment.strategy": "range,roundrobin",
                "error_cb": self._on_error,
            }
        )
        self.consumer.subscribe(cfg.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(target=self._run, name="junction-kafka-source", daemon=True)
        self._thread.start()

    # --- the reader's side (the pipeline's thread) ------------------------------------------

    def ack(self, positions: dict[str, int]) -> None:
        """Say that everything before ``positions`` is committed in the store."""
        with self.state.lock:
            for key, offset in positions.items():
                if key in self.state.assigned:
                    self._resume[key] = offset
        self._acks.put(dict(positions))

    def sync(self, timeout: float) -> bool:
        """Wait until every acknowledgement so far is committed to Kafka; return whether it is."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._acks.put(done)
        return done.wait(timeout)

    def resumes(self, start: dict[str, int]) -> bool:
        """Whether a read from the store's cursor ``start`` can go on with this member.

        It can while the member is healthy and, for every partition it owns, ``start`` names
        the offset the member knows the store to have (the next read after this member's own
        reads); a cursor moved by anything else (a replay, a reset) needs a new member.
        """
        if self._stop.is_set() or not self._thread.is_alive():
            return False
        with self.state.lock:
            if self.state.error is not None:
                return False
            return all(self._resume.get(k) == start.get(k) for k in self.state.assigned)

    def confirm(self, timeout: float) -> bool:
        """Whether the group still holds, for every partition this member owns, the offset it
        committed there (a broker that lost its data, or a group reset, holds none or others).
        """
        if not self._thread.is_alive():
            return False
        request = _Confirm()
        self._confirms.put(request)
        return request.done.wait(timeout) and request.ok

    def resume_read(self) -> None:
        """A kept member starts another read: idle counts from now, as after an assignment.

        Its last fetch responses may predate messages produced since; the read waits
        ``idle_timeout_s`` of fetching before it trusts the watermarks, as a new member's does.
        """
        with self.state.lock:
            self.state.last_message_at = time.monotonic()

    def set_start(self, start: dict[str, int]) -> None:
        """Where partitions the group assigns from now on start (the store's cursor)."""
        with self.state.lock:
            self._start = {k: v for k, v in start.items() if k not in self.state.assigned}

    def failure(self) -> JunctionError | None:
        """The error that stopped the poller, if any."""
        with self.state.lock:
            return self.state.error

    def idle_for(self) -> float | None:
        """Seconds since the last message while nothing waits unread; None while joining.

        Joining: before the first assignment, and after a rebalance took the partitions away
        until the group assigns again (a member between the two owns nothing, which is not
        having caught up).
        """
        with self.state.lock:
            if self.state.joining_since is not None:
                return None
            last = self.state.last_message_at
        if self._paused or self._pending or not self.chunks.empty():
            return 0.0
        return time.monotonic() - last

    def joining_for(self) -> float | None:
        """Seconds the member has been (re)joining the group; None while it holds an assignment."""
        with self.state.lock:
            since = self.state.joining_since
        return None if since is None else time.monotonic() - since

    def last_problem(self) -> JunctionError | None:
        """The latest non-fatal client error (e.g. all brokers down), if any."""
        with self.state.lock:
            return self.state.last_problem

    def unread(self) -> int:
        """Messages on the owned partitions not read yet, as the last fetches saw them.

        Per partition: its high watermark (from the latest fetch response, which the poller
        notes) minus the next offset to read; published as
        ``junction_consumer_lag{pipeline="source.<group>"}``.  A partition no fetch has
        answered for yet counts as one unread message: it is still starting (a slow broker
        resolving ``auto_offset_reset``), not caught up.
        """
        with self.state.lock:
            owned = sorted(self.state.assigned)
            fetched = dict(self.state.fetched)
            marks = dict(self.state.marks)
        total = 0
        for key in owned:
            low, high = marks.get(key, (-1, -1))
            if high < 0:
                total += 1
                continue
            nxt = fetched.get(key, -1)
            if nxt < 0:  # nothing read yet: the fetch starts at the reset point
                nxt = max(low, 0) if self.cfg.auto_offset_reset == "earliest" else high
            lag = max(0, high - nxt)
            topic, partition = parse_tp_key(key)
            metrics.set_consumer_lag(f"source.{self.cfg.group_id}", topic, partition, lag)
            total += lag
        return total

    def current_epoch(self) -> int:
        """Bumped by every revoke: chunks of an older epoch are in-flight work to drop."""
        with self.state.lock:
            return self.state.epoch

    def close(self) -> None:
        """Commit what was acknowledged, leave the group and close the consumer (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=leave_grace_s(self.cfg) + self.cfg.timeout_s + 30)

    # --- the poller thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._commit_acks()
                self._answer_confirms()
                self._flush_pending()
                self._pace()
                msgs = self.consumer.consume(
                    num_messages=self.cfg.batch_size, timeout=self.cfg.poll_timeout_s
                )
                self._take(msgs)
                self._note_positions(bool(msgs))
        except JunctionError as exc:
            with self.state.lock:
                self.state.error = exc
        except KafkaException as exc:
            with self.state.lock:
                self.state.error = classify(exc.args[0], what="consume")
        finally:
            try:
                self._commit_acks()
                self._settle_join()
                self.consumer.close()  # revokes, which commits what was acknowledged
            except (KafkaException, RuntimeError) as exc:
                _log.warning("closing the Kafka consumer failed: %s", type(exc).__name__)

    def _settle_join(self) -> None:
        """Before leaving the group, let a join in progress finish (at most ``leave_grace_s``).

        On tansu 0.6 a member that leaves while its JoinGroup is pending wedges the group: the
        next members' JoinGroup is answered and their SyncGroup never is, for good (neither the
        session nor the rebalance timeout clears it).  A read that gave up joining
        (``join_timeout_s``), or ended while its member rejoined after a broker restart (the
        soak, before reads waited for a rejoin), closed it exactly then.  So a member that is
        (re)joining and known to the coordinator (it has a member id) polls
        on until the group assigns; what it fetches meanwhile is dropped (only acknowledged
        offsets are ever committed).  A member no coordinator knows (brokers away) leaves at
        once.
        """
        deadline = time.monotonic() + leave_grace_s(self.cfg)
        while self.joining_for() is not None and self.consumer.memberid():
            if time.monotonic() >= deadline:
                _log.warning("left the group while a join was still in progress")
                return
            self.consumer.consume(num_messages=self.cfg.batch_size, timeout=self.cfg.poll_timeout_s)

    def _take(self, msgs: list[Message]) -> None:
        seen: dict[str, int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() in _BENIGN_CODES:
                    continue
                if err.fatal() or err.code() in _AUTH_CODES:
                    raise classify(err, what="consume")
                _log.warning("Kafka consumer error %s", err.name())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            if tp_key(topic, partition) not in self.state.assigned:
                continue  # fetched before a revoke: the new owner reads it
            key = tp_key(topic, partition)
            floor = self._resume.get(key)
            if floor is not None and offset < floor:
                # below where the store is (every start is there): the log started over (a
                # broker that lost its data, a topic made again) and the client's reset went
                # back to offsets, hence record keys, the store already has
                raise _past_log_end(key, floor, offset)
            ts_type, ts = msg.timestamp()
            seen[key] = offset + 1
            self._pending.append(
                Polled(topic, partition, offset, msg.key(), msg.value(), ts if ts_type else None)
            )
        if msgs:
            with self.state.lock:
                self.state.last_message_at = time.monotonic()
                self.state.fetched.update(seen)

    def _note_positions(self, read: bool) -> None:
        """Note the client's next offsets (they step over transaction markers) and watermarks.

        Local lookups of what the latest fetch responses said; at most every ``MARKS_EVERY_S``
        unless messages were just read.
        """
        now = time.monotonic()
        if not read and now < self._marks_at + MARKS_EVERY_S:
            return
        self._marks_at = now
        assignment = self.consumer.assignment()
        marks = {
            tp_key(tp.topic, tp.partition): self.consumer.get_watermark_offsets(tp, cached=True)
            for tp in assignment
        }
        got = self.consumer.position(assignment)
        with self.state.lock:
            for key, (low, high) in marks.items():
                if key in self.state.assigned and high >= 0:
                    self.state.marks[key] = (low, high)
                    start = self._unchecked.pop(key, None)
                    if start is not None and start > high:
                        self.state.error = self.state.error or _past_log_end(key, start, high)
            for tp in got:
                key = tp_key(tp.topic, tp.partition)
                if tp.offset > self.state.fetched.get(key, -1) and key in self.state.assigned:
                    self.state.fetched[key] = tp.offset

    def _answer_confirms(self) -> None:
        """Serve ``confirm``: the group's committed offsets against this member's own."""
        asked: list[_Confirm] = []
        while True:
            try:
                asked.append(self._confirms.get_nowait())
            except queue.Empty:
                break
        if not asked:
            return
        with self.state.lock:
            mine = {k: self.state.committed.get(k) for k in self.state.assigned}
        try:
            got = self.consumer.committed(
                [TopicPartition(*parse_tp_key(k)) for k in sorted(mine)], timeout=self.cfg.timeout_s
            )
            theirs = {tp_key(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}
            ok = all(theirs.get(k) == v for k, v in mine.items())
        except KafkaException as exc:
            _log.warning("reading the group's committed offsets failed: %s", exc.args[0].name())
            ok = False
        for request in asked:
            request.ok = ok
            request.done.set()

    def _flush_pending(self) -> None:
        """Move read messages into chunks of at most ``batch_size`` while there is room."""
        while self._pending and not self.chunks.full():
            part, self._pending = (
                self._pending[: self.cfg.batch_size],
                self._pending[self.cfg.batch_size :],
            )
            for m in part:
                self._positions[tp_key(m.topic, m.partition)] = m.offset + 1
            with self.state.lock:
                epoch = self.state.epoch
            self.chunks.put_nowait(Chunk(part, dict(self._positions), epoch))

    def _pace(self) -> None:
        """Pause every assigned partition while the pipeline is behind; resume once it is not."""
        behind = self.chunks.full() or len(self._pending) >= self.cfg.batch_size
        if behind == self._paused:
            return
        assignment = self.consumer.assignment()
        if behind:
            self.consumer.pause(assignment)
            with self.state.lock:
                self.state.pauses += 1
        else:
            self.consumer.resume(assignment)
            with self.state.lock:  # time spent paused is not idle time
                self.state.last_message_at = time.monotonic()
        self._paused = behind

    def _commit_acks(self) -> None:
        latest: dict[str, int] = {}
        waiting: list[threading.Event] = []
        while True:
            try:
                item = self._acks.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                waiting.append(item)
            else:
                latest.update(item)
        if latest:
            with self.state.lock:
                self.state.acked.update(latest)
            self._commit(set(latest))
        for done in waiting:
            done.set()

    def _commit(self, keys: set[str]) -> None:
        """Store and commit the acknowledged offsets of ``keys`` that this member owns."""
        with self.state.lock:
            owned = {
                k: v
                for k, v in self.state.acked.items()
                if k in keys and k in self.state.assigned and self.state.committed.get(k) != v
            }
        if not owned:
            return
        offsets = [TopicPartition(*parse_tp_key(k), v) for k, v in owned.items()]
        try:
            self.consumer.store_offsets(offsets=offsets)
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the store's cursor is the resume point; the group's offset only lags behind
            _log.warning("committing Kafka offsets failed: %s", exc.args[0].name())
            return
        with self.state.lock:
            self.state.committed.update(owned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = tp_key(tp.topic, tp.partition)
            with self.state.lock:
                # the read's cursor, else where this member knows the store to be (it owned the
                # partition before): the group's committed offset may lag behind the store
                start = self._start.pop(key, None)
                if start is None:
                    start = self._resume.get(key)
                if start is not None:
                    self._resume[key] = start
            if start is not None:
                tp.offset = start
                self._unchecked[key] = start  # against the first fetch's high watermark
            else:
                tp.offset = OFFSET_INVALID  # the group's committed offset, else the reset
        committed = {
            tp_key(tp.topic, tp.partition): tp.offset
            for tp in consumer.committed(
                [TopicPartition(tp.topic, tp.partition) for tp in partitions],
                timeout=self.cfg.timeout_s,
            )
            if tp.offset >= 0
        }
        with self.state.lock:
            for tp in partitions:
                key = tp_key(tp.topic, tp.partition)
                self.state.assigned.add(key)
                if key in committed:
                    self.state.committed[key] = committed[key]
                if tp.offset >= 0:
                    self._positions[key] = tp.offset
                elif key in committed:
                    self._positions[key] = committed[key]
                if key in self._positions:
                    self.state.fetched[key] = self._positions[key]
            self.state.joining_since = None
            self.state.last_message_at = time.monotonic()
        consumer.assign(partitions)
        self._paused = False

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {tp_key(tp.topic, tp.partition) for tp in partitions}
        self._commit_acks()
        self._commit(keys)  # finished work: what the store holds
        with self.state.lock:
            self.state.assigned -= keys
            self.state.epoch += 1
            self.state.revokes += 1
            self.state.joining_since = time.monotonic()  # until the group assigns again
            for k in keys:  # (``_resume`` keeps where the store is, for a later assignment)
                self._positions.pop(k, None)
                self.state.committed.pop(k, None)
                self.state.fetched.pop(k, None)
                self.state.marks.pop(k, None)
        # in-flight work is abandoned: the new owner reads it again from the committed offset
        self._pending = [m for m in self._pending if tp_key(m.topic, m.partition) not in keys]
        while True:
            try:
                self.chunks.get_nowait()
            except queue.Empty:
                break
        consumer.unassign()
        self._paused = False

    def _on_error(self, err: KafkaError) -> None:
        problem = classify(err, what="consumer")
        with self.state.lock:
            if err.fatal() or err.code() in _AUTH_CODES:
                self.state.error = problem
            else:
                self.state.last_problem = problem
        _log.warning("Kafka client error %s", err.name())


def _past_log_end(key: str, start: int, high: int) -> FatalError:
    """The store's position is past the end of the partition's log: stop the read.

    The topic was deleted and made again, or the broker lost its data: the offsets start over,
    so the new messages sit *below* the saved position.  Left alone, the client would apply
    ``auto.offset.reset`` (``latest`` skips them; ``earliest`` reads them under offsets, hence
    record keys, the store already holds, and they are dropped as duplicates).  Both lose them
    without a word, so the read fails instead, naming the fix.  Found by the fault suite.
    """
    topic, partition = parse_tp_key(key)
    return FatalError(
        f"the saved position of {topic}[{partition}] ({start}) is past the end of its log "
        f"({high}): the topic was made again or the broker lost its data; reset this "
        "pipeline's cursor for the topic to read it again",
        code="cursor_past_log_end",
        context={"topic": topic, "partition": partition, "position": start, "end": high},
    )


class DeadLetters:
    """An idempotent producer for poison messages; ``send`` returns once the broker has them."""

    def __init__(self, cfg: KafkaConfig) -> None:
        self.cfg = cfg
        self._producer: Producer | None = None

    def send(self, topic: str, items: list[tuple[Polled, dict[str, str]]]) -> None:
        """Produce each poison message with its context headers and wait for every ack.

        Raises:
            UnavailableError | AuthError | FatalError: The dead-letter topic did not take them;
                the batch is not handed on, so its cursor does not move past them.
        """
        if self._producer is None:
            self._producer = Producer(
                {
                    **client_settings(self.cfg),
                    "enable.idempotence": True,
                    "acks": "all",
                    "message.timeout.ms": int(self.cfg.timeout_s * 1000),
                }
            )
        failures: list[KafkaError] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for polled, headers in items:
            self._producer.produce(
                topic,
                value=polled.value,
                key=polled.key,
                headers=[(k, v.encode()) for k, v in headers.items()],
                on_delivery=report,
            )
        left = self._producer.flush(self.cfg.timeout_s + 5)
        if failures:
            raise classify(failures[0], what=f"dead letter to {topic}")
        if left:
            raise UnavailableError(f"Kafka did not acknowledge the dead letters for {topic!r}")

    def close(self) -> None:
        """Flush and drop the producer (idempotent)."""
        if self._producer is not None:
            self._producer.flush(self.cfg.timeout_s)
            self._producer = None


def check_cluster(cfg: KafkaConfig) -> str | None:
    """Ask the brokers for the topics' metadata; None if all are there, else a reason."""
    consumer = Consumer({**client_settings(cfg), "group.id": cfg.group_id})
    try:
        meta = consumer.list_topics(timeout=cfg.timeout_s)
    except KafkaException as exc:
        return classify(exc.args[0], what="metadata").user_message
    finally:
        consumer.close()
    missing = [t for t in cfg.topics if t not in meta.topics or meta.topics[t].error is not None]
    if missing:
        return f"topics not found: {', '.join(missing)}"
    return None


def partitions_of(cfg: KafkaConfig) -> dict[str, int]:
    """Each topic's partition count (metadata), for discovery."""
    consumer = Consumer({**client_settings(cfg), "group.id": cfg.group_id})
    try:
        meta = consumer.list_topics(timeout=cfg.timeout_s)
    except KafkaException as exc:
        raise classify(exc.args[0], what="metadata") from exc
    finally:
        consumer.close()
    return {t: len(meta.topics[t].partitions) for t in cfg.topics if t in meta.topics}


Decoder = Callable[[Polled], dict[str, Any]]
# Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, then the payload
_MAGIC = 0
_FRAME = 5


class JsonSchemaDecoder:
    """Decodes Confluent-framed JSON payloads and validates them against their registered schema.

    Schemas come from a Confluent-compatible registry (``GET /schemas/ids/<id>``) and are cached
    by id.  A schema that ``$ref``s other registered subjects is not resolved (only local refs).

    Raises (from ``__call__``):
        RecordError: Not framed (``not_framed``), unknown schema id (``schema_not_found``), not
            JSON, not an object, or invalid for its schema (``schema_invalid``): poison.
        UnavailableError: The registry is unreachable or fails (5xx): not the message's fault.
        AuthError: The registry refused the credentials.
    """

    def __init__(self, cfg: KafkaConfig) -> None:
        """Prepare the registry session; the validator library is checked here."""
        try:
            import jsonschema.exceptions
            import jsonschema.validators
        except ImportError as exc:
            raise ConfigError(
                "format jsonschema needs the jsonschema package, which is not installed",
                details=str(exc),
            ) from exc
        import requests

        self._validators = jsonschema.validators
        self._schema_error: type[Exception] = jsonschema.exceptions.SchemaError
        self._requests = requests
        self._url = (cfg.schema_registry_url or "").rstrip("/")
        self._timeout = cfg.timeout_s
        self._session = requests.Session()
        if cfg.schema_registry_username is not None and cfg.schema_registry_password is not None:
            self._session.auth = (
                cfg.schema_registry_username,
                cfg.schema_registry_password.get_secret_value(),
            )
        self._cache: dict[int, Any] = {}

    def __call__(self, polled: Polled) -> dict[str, Any]:
        """The payload as a dict, validated against the schema its frame names."""
        value = polled.value
        if not value:
            raise RecordError("the message has no value", code="empty_value")
        if len(value) < _FRAME or value[0] != _MAGIC:
            raise RecordError("the message is not schema-registry framed", code="not_framed")
        validator = self._validator(int.from_bytes(value[1:_FRAME], "big"))
        try:
            record = json.loads(value[_FRAME:])
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError("the message is not JSON", code="invalid_json") from exc
        if not isinstance(record, dict):
            raise RecordError("the message is not a JSON object", code="not_an_object")
        error = next(iter(validator.iter_errors(record)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise SchemaValidationError(
                f"the message does not match its registered schema at {where}",
                details=error.validator if isinstance(error.validator, str) else None,
            )
        return record

    def _validator(self, schema_id: int) -> Any:
        if schema_id in self._cache:
            cached = self._cache[schema_id]
            if cached is None:
                raise RecordError(
                    f"the message names schema id {schema_id}, which is not a JSON Schema",
                    code="wrong_schema_type",
                )
            return cached
        url = f"{self._url}/schemas/ids/{schema_id}"
        try:
            resp = self._session.get(url, timeout=self._timeout)
        except self._requests.RequestException as exc:
            raise UnavailableError(
                "the schema registry is unreachable; will retry", details=type(exc).__name__
            ) from exc
        if resp.status_code == 404:
            raise RecordError(
                f"the message names schema id {schema_id}, which the registry does not know",
                code="schema_not_found",
            )
        if resp.status_code in (401, 403):
            raise AuthError(f"the schema registry refused the credentials ({resp.status_code})")
        if resp.status_code != 200:
            raise UnavailableError(
                f"the schema registry answered {resp.status_code}; will retry",
                details=resp.text[:200],
            )
        try:
            body = resp.json()
            kind = body.get("schemaType", "AVRO")
            schema = json.loads(body["schema"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FatalError(
                f"the schema registry's schema id {schema_id} is unreadable",
                details=type(exc).__name__,
            ) from exc
        if kind != "JSON":
            # a message framed for another format: poison, like any undecodable message
            self._cache[schema_id] = None
            raise RecordError(
                f"the message names schema id {schema_id}, a {kind} schema, not a JSON Schema",
                code="wrong_schema_type",
            )
        try:
            cls = self._validators.validator_for(schema)
            cls.check_schema(schema)
        except (self._schema_error, TypeError, AttributeError) as exc:
            raise FatalError(f"schema id {schema_id} is not a valid JSON Schema") from exc
        validator = cls(schema)
        self._cache[schema_id] = validator
        return validator

    def close(self) -> None:
        """Close the registry session."""
        self._session.close()


def registry_decoder(cfg: KafkaConfig) -> JsonSchemaDecoder:
    """The decoder of a registry format: jsonschema natively; avro is not supported here.

    Raises:
        ConfigError: ``avro`` (it needs fastavro, which the hub does not install), or the
            jsonschema package is missing.
    """
    if cfg.format == "avro":
        raise ConfigError(
            "format avro is not supported yet: it needs fastavro (confluent-kafka's "
            "schemaregistry and avro extras), which the hub does not install"
        )
    return JsonSchemaDecoder(cfg)
