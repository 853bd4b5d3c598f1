"""The ``kafka`` source connector: topics read by a consumer group, committed after the store.

One stream (the topics, joined with ``,``) per connector.  A batch holds up to ``batch_size``
messages; its cursor is ``{"<topic>/<partition>": next offset}`` for the partitions this member
owns.  The runner writes that cursor in the same transaction as the batch's effects and only
then asks for the next batch: that request is the connector's "batch committed" signal, on which
it stores and commits the batch's offsets to Kafka.  So the group's committed offsets never get
ahead of the store, and after a crash the read starts from the store's cursor (the group's
offset only for partitions the cursor does not name).  Record keys are unique per message
(``topic:partition:offset``, prefixed by the message key), so a replayed message is absorbed by
the store's idempotent inserts: exactly-once in effect.

Poison messages (empty, not JSON, not an object, failing their registered schema) are produced
to ``deadletter_topic`` with context headers before their batch is handed on, and counted in
``dead_lettered``; they are not also quarantined in the store.  With ``deadletter_topic: null``
they ride in ``RawBatch.errors`` and the runner quarantines them instead.
"""

from __future__ import annotations

from collections.abc import Generator
from queue import Empty
from time import monotonic
from typing import Any, ClassVar

import orjson

from connectors.base import Capability, CheckResult, RawBatch, RowError, StreamInfo
from connectors.kafka.client import (
    Chunk,
    DeadLetters,
    GroupReader,
    JsonSchemaDecoder,
    Polled,
    check_cluster,
    parse_tp_key,
    partitions_of,
    registry_decoder,
)
from connectors.kafka.config import KafkaConfig
from junction.core.errors import (
    ConfigError,
    EncodingError,
    FatalError,
    JunctionError,
    ParseError,
    RecordError,
)
from junction.core.logging import get_logger

log = get_logger(__name__)
WAIT_S = 0.05  # how often an idle read looks at the poller's state
LAG_EVERY_S = 5.0  # how often a read publishes its partitions' lag
RECHECK_S = 0.25  # how often an idle read asks the brokers whether it has caught up
GIVE_UP_FACTOR = 10.0  # an idle read waits at most this many idle_timeout_s (and at least
# the client's timeout_s) for messages the brokers report but do not hand over


def decode_json(polled: Polled) -> dict[str, Any]:
    """Decode a plain JSON object payload.

    Raises:
        RecordError: Empty value (``empty_value``), bad UTF-8 (``encoding_error``), not JSON
            (``invalid_json``) or not an object (``not_an_object``).
    """
    if polled.value is None or not polled.value:
        raise RecordError("the message has no value", code="empty_value")
    try:
        polled.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError("the message is not UTF-8", details=str(exc)) from exc
    try:
        value = orjson.loads(polled.value)
    except orjson.JSONDecodeError as exc:
        raise ParseError("the message is not JSON", details=str(exc), code="invalid_json") from exc
    if not isinstance(value, dict):
        raise RecordError("the message is not a JSON object", code="not_an_object")
    return value


class KafkaSourceConnector:
    """Reads Kafka topics as one stream through a consumer group."""

    name: ClassVar[str] = "kafka"
    config_model: ClassVar[type[KafkaConfig]] = KafkaConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DISCOVER, Capability.INCREMENTAL}
    )

    def __init__(self, config: KafkaConfig) -> None:
        """Keep the config; the group member is created by the first read."""
        self.config = config
        self._decode: JsonSchemaDecoder | None = None
        self._dead = DeadLetters(config)
        self._reader: GroupReader | None = None
        self._kept_epoch = -1  # the kept member's rebalance count when its last read ended
        self.dead_lettered = 0  # poison messages produced to the dead-letter topic so far
        self._pauses = 0  # of the members closed so far
        self._revokes = 0

    @property
    def pauses(self) -> int:
        """Back-pressure pauses so far."""
        reader = self._reader
        return self._pauses + (reader.state.pauses if reader is not None else 0)

    @property
    def revokes(self) -> int:
        """Rebalances that took partitions away so far (a member's final close included)."""
        reader = self._reader
        return self._revokes + (reader.state.revokes if reader is not None else 0)

    def check(self) -> CheckResult:
        """Whether the brokers answer and every configured topic exists."""
        try:
            problem = check_cluster(self.config)
        except JunctionError as exc:
            return CheckResult(False, exc.user_message)
        if problem is not None:
            return CheckResult(False, problem)
        return CheckResult(True, f"{len(self.config.topics)} topic(s) reachable")

    def discover(self) -> list[StreamInfo]:
        """The one stream: the configured topics (message values are JSON objects)."""
        partitions_of(self.config)  # the brokers answer (raises a typed error otherwise)
        return [StreamInfo(name=self.config.stream, json_schema={"type": "object"})]

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Generator[RawBatch, None, None]:
        """Yield batches after ``cursor`` until the group has caught up.

        Caught up: nothing arrived for ``idle_timeout_s`` and the brokers' high watermarks say
        no message is left unread on this member's partitions (a partition still starting,
        e.g. resolving ``auto_offset_reset`` on a slow broker, is not silence), nor is there an
        error those watermarks revealed (a saved position past the log's end).  A member whose
        partitions a rebalance took (a lost session) owns nothing until the group assigns
        again: that is joining, not having caught up, and the read waits for the assignment
        (up to ``join_timeout_s``).  Messages that stay unfetched for ``GIVE_UP_FACTOR`` idle
        timeouts (at least ``timeout_s``) are left to the next read, with a warning.

        Asking for the next batch tells the connector that the previous one is committed in
        the store; only then are its offsets committed to Kafka.

        Raises:
            ConfigError: Another stream, or a cursor this connector did not write.
            AuthError | UnavailableError | FatalError: The brokers refused, or were away for
                a whole ``join_timeout_s`` of joining (a read left without partitions and
                without a client error that long ends instead: more members than partitions).
        """
        cfg = self.config
        if stream != cfg.stream:
            raise ConfigError(f"the kafka source reads one stream, {cfg.stream!r}")
        if cfg.format != "json" and self._decode is None:
            self._decode = registry_decoder(cfg)
        start = self._start_positions(cursor)
        reader = self._reader
        if (
            reader is not None
            and cfg.keep_member
            and reader.resumes(start)
            and reader.confirm(cfg.timeout_s)  # the group still is as this member left it
            # no rebalance since the last read: a member that lost and regained its partitions
            # meanwhile (a broker that came back empty, say) may trust watermarks cached before
            and reader.current_epoch() == self._kept_epoch
            and reader.joining_for() is None
        ):
            reader.set_start(start)  # the member goes on: no join
            reader.resume_read()
        else:
            self._close_reader()
            reader = self._reader = GroupReader(cfg, start)
        lag_at = monotonic() + LAG_EVERY_S
        recheck_at = 0.0
        caught_up = False
        try:
            while True:
                failure = reader.failure()
                if failure is not None:
                    raise failure
                if monotonic() >= lag_at:
                    lag_at = monotonic() + LAG_EVERY_S
                    reader.unread()  # publishes junction_consumer_lag
                try:
                    chunk = reader.chunks.get(timeout=WAIT_S)
                except Empty:
                    idle = reader.idle_for()
                    if idle is None:  # joining: at the start, or after a rebalance
                        joining = reader.joining_for()
                        if joining is None or joining <= cfg.join_timeout_s:
                            continue
                        problem = reader.last_problem()
                        if problem is not None:  # e.g. every broker is down
                            raise problem from None
                        log.info("no partitions assigned within join_timeout_s; read ends")
                        return
                    if idle < cfg.idle_timeout_s or monotonic() < recheck_at:
                        continue
                    recheck_at = monotonic() + RECHECK_S
                    unread = reader.unread()
                    # the watermarks unread() just saw may have come with an error (a saved
                    # position past the log's end): caught up on them is no success
                    failure = reader.failure()
                    if failure is not None:
                        raise failure from None
                    if unread == 0:
                        caught_up = True
                        return
                    if idle >= max(cfg.idle_timeout_s * GIVE_UP_FACTOR, cfg.timeout_s):
                        log.warning(
                            "messages stayed unfetched; the next read continues with them",
                            unread=unread,
                            group=cfg.group_id,
                        )
                        return
                    continue
                if chunk.epoch != reader.current_epoch():
                    continue  # read before a rebalance: abandoned in flight
                batch = self._batch(chunk)
                yield batch
                # the runner asked for more: the batch and its cursor are in the store
                reader.ack(chunk.positions)
        finally:
            # a member that caught up is kept for the next read (once Kafka holds the read's
            # offsets, as a closed one would); any other end leaves the group
            if caught_up and cfg.keep_member and reader.sync(cfg.timeout_s):
                self._kept_epoch = reader.current_epoch()
            else:
                self._close_reader()

    def _start_positions(self, cursor: dict[str, Any] | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, value in (cursor or {}).items():
            topic, _ = parse_tp_key(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError("the saved Kafka cursor has an unknown format")
            if topic in self.config.topics:
                out[key] = value
        return out

    def _batch(self, chunk: Chunk) -> RawBatch:
        cfg = self.config
        decode = self._decode or decode_json
        records: list[dict[str, Any]] = []
        keys: list[str] = []
        positions: list[int] = []
        errors: list[RowError] = []
        poison: list[tuple[Polled, dict[str, str]]] = []
        for m in chunk.messages:
            key = self._key(m)
            try:
                record = decode(m)
            except RecordError as exc:
                if cfg.errors_tolerance == "none":
                    raise self._intolerable(m, exc) from None
                if cfg.deadletter_topic is None:
                    errors.append(RowError(key, m.offset, m.value or b"", exc))
                else:
                    poison.append((m, self._headers(m, exc)))
                continue
            records.append(record)
            keys.append(key)
            positions.append(m.offset)
        if poison and cfg.deadletter_topic is not None:
            self._dead.send(cfg.deadletter_topic, poison)
            self.dead_lettered += len(poison)
            log.warning(
                "poison messages sent to the dead-letter topic",
                count=len(poison),
                topic=cfg.deadletter_topic,
            )
        return RawBatch(
            stream=cfg.stream,
            records=records,
            keys=keys,
            positions=positions,
            cursor=dict(chunk.positions),
            errors=errors,
            provenance={"connector": self.name, "group": cfg.group_id},
        )

    def _key(self, m: Polled) -> str:
        where = f"{m.topic}:{m.partition}:{m.offset}"
        if self.config.key == "kafka_key" and m.key:
            return f"{m.key.decode('utf-8', 'replace')}@{where}"
        return where

    def _intolerable(self, m: Polled, exc: RecordError) -> FatalError:
        """``errors_tolerance: none``: the read stops at a poison message, before its batch."""
        where = f"{m.topic}:{m.partition}:{m.offset}"
        log.error("poison message stops the read", message=where, code=exc.code)
        return FatalError(
            f"the message at {where} cannot be read ({exc.user_message}); errors_tolerance is "
            "none, so the read stops there until it is fixed or skipped",
            code="poison_message",
            context={"topic": m.topic, "partition": m.partition, "offset": m.offset},
        )

    def _headers(self, m: Polled, exc: RecordError) -> dict[str, str]:
        return {
            "junction.connector": self.name,
            "junction.group": self.config.group_id,
            "junction.source.topic": m.topic,
            "junction.source.partition": str(m.partition),
            "junction.source.offset": str(m.offset),
            "junction.error.code": exc.code,
            "junction.error.class": type(exc).__name__,
            "junction.error.message": exc.user_message,
        }

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
            self._pauses += reader.state.pauses
            self._revokes += reader.state.revokes

    def close(self) -> None:
        """Leave the group (committing acknowledged offsets) and flush the dead-letter producer."""
        self._close_reader()
        self._dead.close()
        if self._decode is not None:
            self._decode.close()
            self._decode = None
