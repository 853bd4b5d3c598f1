"""A stage worker: consume a stage topic, run its roles, write effects and relay, commit offsets.

One batch at a time, in this order, so nothing is lost and no effect repeats:

1. ``consume`` up to ``bus.batch_size`` messages (rebalance callbacks run here, between
   batches: a partition given away has its sent messages awaited and marked and its offsets
   committed, one received is marked for recovery);
2. decode them and run the roles (``transforms``); a message that cannot be decoded or whose
   record fails a stage is quarantined with its bytes, its offset still moves on;
3. wait for the broker's acknowledgements of the previous batch's messages (they travelled
   while steps 1 and 2 ran), then write every effect and every relay row in ONE store
   transaction (idempotent inserts), with the marks of those acknowledged messages;
4. publish the relay rows of the batch's partitions (and of the partitions just received) in id
   order through the idempotent producer: from memory without waiting when the partitions
   held nothing else unsent, else read back, sent, awaited and marked;
5. commit the consumed offsets, asynchronously (ADR-0032): the relay rows are durable, so the
   messages go out whatever happens to this consumer.

A crash after 3 makes the partition's next owner publish the rows nobody marked (some perhaps
a second time) and, when the offsets were not committed yet, read the batch again: its inserts
are no-ops.  When the store or the broker is away (a retryable
error), the worker seeks its partitions back to the batch's first offsets, backs off, and reads
the batch again.  Other errors stop the worker (its process exits non-zero; the group moves its
partitions to the others).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from sqlalchemy import Connection

from junction.core import metrics, tracing
from junction.core.errors import ConfigError, JunctionError, RecordError
from junction.core.gc_pause import gc_paused
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import BusConfig, HubConfig
from junction.pipeline.model_watch import ModelWatch
from junction.pipeline.prepare import quarantine_row
from junction.pipeline.stages import bus as kafka
from junction.pipeline.stages import traced as traced_stage
from junction.pipeline.stages.reader import RECORD_STAGES, MessageReader
from junction.pipeline.stages.relay import Marks, Relay, RelayRow, insert_rows, relay_row
from junction.pipeline.stages.topics import (
    HEADER_PIPELINE,
    ROLE_INPUT,
    ROLE_OUTPUT,
    Item,
    Source,
    decode,
    encode,
    headers_of,
    topic_name,
)
from junction.pipeline.stages.transforms import Effects, PipelineStages
from junction.store.relay_marks import written_span
from junction.store.repo import Store
from junction.store.wal import BackgroundCheckpoints, sqlite_file_of

log = get_logger(__name__)
# the metrics' stage label of each role
_METRIC_STAGE = {"normalize": "normalize", "score": "score", "deliver": "route"}
MODEL_CHECK_S = 1.0
CHECKPOINT_EVERY = 8  # committed batches between background WAL checkpoints (SQLite file)
PRUNE_EVERY_S = 600.0
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
LAG_EVERY_S = 5.0
IDLE_RECHECK_S = 0.25  # how often a worker past its idle time asks what is left unread
IDLE_GIVE_UP = 10.0  # ... and for how many idle times at most
BUS_PIPELINE = "_bus"  # quarantine's pipeline for a message no pipeline of this worker reads


def require_bus(cfg: HubConfig) -> BusConfig:
    """The config's ``bus:`` section.

    Raises:
        ConfigError: there is none (worker roles exchange records through Kafka).
    """
    if cfg.bus is None:
        raise ConfigError(
            "worker roles pass records through Kafka: add a `bus:` section with "
            "bootstrap_servers to the config (or run `junction run` for one process)"
        )
    return cfg.bus


@dataclass
class WorkerStats:
    """What a worker did so far."""

    batches: int = 0
    consumed: int = 0
    passed: int = 0  # items that reached the end of the worker's roles
    quarantined: int = 0
    published: int = 0
    retries: int = 0
    assigned: set[str] = field(default_factory=set)


class StageWorker:
    """One consumer-group member running ``roles`` (normalize, score, deliver, or a fused run)."""

    def __init__(
        self,
        cfg: HubConfig,
        store: Store,
        roles: tuple[str, ...],
        *,
        pipelines: list[str] | None = None,
        registry: Registry = default_registry,
    ) -> None:
        """Compile the pipelines, create missing topics, join the role's consumer group.

        Raises:
            ConfigError: no ``bus:`` section, an ingest role, an unknown pipeline.
            UnavailableError: the brokers do not answer.
        """
        del registry  # the roles after ingest need no connector
        self.bus = require_bus(cfg)
        in_stage = ROLE_INPUT[roles[0]]
        if in_stage is None:
            raise ConfigError("the ingest role reads sources: run it with IngestWorker")
        self.cfg, self.store, self.roles = cfg, store, roles
        self.in_stage: str = in_stage
        self.out_stage = ROLE_OUTPUT[roles[-1]]
        names = pipelines or list(cfg.pipelines)
        unknown = [n for n in names if n not in cfg.pipelines]
        if unknown:
            raise ConfigError(f"no pipeline named {unknown[0]!r} in the config")
        self._filtered = pipelines is not None
        self.watches: dict[str, ModelWatch] = {}
        self.stages = {name: self._compile(name) for name in names}
        prefix = self.bus.topic_prefix
        self.in_topics = sorted(
            {topic_name(prefix, in_stage, s.entity) for s in self.stages.values()}
        )
        self._readers = self._message_readers(prefix)
        self.out_topics: dict[str, str] = {}
        if self.out_stage is not None:
            self.out_topics = {
                n: topic_name(prefix, self.out_stage, s.entity) for n, s in self.stages.items()
            }
        kafka.ensure_topics(self.bus, [*self.in_topics, *self.out_topics.values()])
        self.group = f"{self.bus.group_prefix}.{roles[0]}"
        if self._filtered:  # workers of other pipelines on the same topic read in their own group
            self.group += "." + "+".join(sorted(names))
        self.relay: Relay | None = None
        if self.out_stage is not None:
            self.relay = Relay(
                store, kafka.make_producer(self.bus), timeout_s=self.bus.publish_timeout_s
            )
        self.stats = WorkerStats()
        # on a SQLite file, the WAL is copied into the database off the batch loop
        db = sqlite_file_of(store.engine.url.render_as_string(hide_password=False))
        self._wal = BackgroundCheckpoints(db, CHECKPOINT_EVERY) if db is not None else None
        self._recover: set[str] = set()
        # the next offset of each partition this worker committed asynchronously: committed
        # again, and waited for, when the partition is revoked or the worker closes
        self._offsets: dict[tuple[str, int], int] = {}
        self._model_check_at = time.monotonic() + MODEL_CHECK_S
        self._pruned_at = time.monotonic()
        self._lag_at = 0.0
        # the lag metric's pipeline label: the group's role (a valid Kubernetes label value, so
        # an HPA's metric selector can name it)
        self.lag_label = f"stage.{roles[0]}"
        self.consumer: Consumer = kafka.make_consumer(
            self.bus, self.group, self._on_assign, self._on_revoke, self.in_topics
        )

    def _message_readers(self, prefix: str) -> dict[str, MessageReader]:
        """A one-pass reader for each input topic whose pipelines share one canonical model."""
        if self.in_stage not in RECORD_STAGES:
            return {}
        models: dict[str, set[Any]] = {}
        for s in self.stages.values():
            models.setdefault(topic_name(prefix, self.in_stage, s.entity), set()).add(s.model_cls)
        return {
            topic: MessageReader(self.in_stage, next(iter(classes)))
            for topic, classes in models.items()
            if len(classes) == 1
        }

    def _compile(self, name: str) -> PipelineStages:
        pcfg = self.cfg.pipelines[name]
        scorer = None
        if "score" in self.roles and pcfg.scoring is not None:
            watch = ModelWatch(self.cfg.models_dir, pcfg.scoring, owner=f"worker:{name}")
            scorer = watch.load().scorer
            self.watches[name] = watch
        return PipelineStages(name, pcfg, scorer, connector=pcfg.source.connector)

    def _refresh_models(self) -> None:
        """After a promotion or rollback, score the next batches with the new production."""
        if time.monotonic() < self._model_check_at:
            return
        self._model_check_at = time.monotonic() + MODEL_CHECK_S
        for name, watch in self.watches.items():
            if watch.watched and watch.stale() and watch.reload() and watch.current is not None:
                pcfg = self.cfg.pipelines[name]
                self.stages[name] = PipelineStages(
                    name, pcfg, watch.current.scorer, connector=pcfg.source.connector
                )

    # --- rebalance callbacks (run inside consume, between batches) ------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        scopes = {f"{tp.topic}:{tp.partition}" for tp in partitions}
        self.stats.assigned |= scopes
        self._recover |= scopes  # publish what a previous owner committed but did not send
        log.info("partitions assigned", group=self.group, partitions=len(partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # between batches: the relay awaits and marks what it sent, the offsets are committed
        scopes = {f"{tp.topic}:{tp.partition}" for tp in partitions}
        self.stats.assigned -= scopes
        self._recover -= scopes
        if self.relay is not None:
            try:
                self.relay.forget(scopes)
            except JunctionError as exc:  # the new owner sends the unmarked rows again
                log.warning("could not mark the sent stage messages", error=type(exc).__name__)
        self._commit_now({(tp.topic, tp.partition) for tp in partitions})
        for tp in partitions:  # their new owner reports their lag now
            metrics.clear_consumer_lag(self.lag_label, tp.topic, tp.partition)
        log.info("partitions revoked", group=self.group, partitions=len(partitions))

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        idle_exit_s: float | None = None,
        on_batch: Callable[[WorkerStats], None] | None = None,
    ) -> WorkerStats:
        """Work until ``stop`` is set (or, with ``idle_exit_s``, until nothing arrived for that
        long and nothing is left unread on the partitions); return stats.

        Raises:
            JunctionError: a non-retryable failure (the broker refuses, a bad configuration).
        """
        idle_since = time.monotonic()
        recheck_at = 0.0
        attempt = 0
        while not stop.is_set():
            msgs: list[Message] = self.consumer.consume(
                self.bus.batch_size, self.bus.poll_timeout_s
            )
            try:
                self._refresh_models()
                if self._recover and self.relay is not None:
                    self.stats.published += self.relay.publish(self._recover)
                    self._recover.clear()
                if msgs:
                    with gc_paused():  # the batch's objects form no cycles
                        self.process(msgs)
                    idle_since = time.monotonic()
                    if on_batch is not None:
                        on_batch(self.stats)
                elif self.relay is not None:
                    self.relay.flush_marks()  # an idle worker leaves no sent row unmarked
                attempt = 0
            except JunctionError as exc:
                if not exc.retryable:
                    raise
                self._rewind(msgs)
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                self.stats.retries += 1
                log.warning(
                    "stage batch failed; reading it again", error=type(exc).__name__, wait_s=delay
                )
                stop.wait(delay)
                continue
            if not msgs:
                self._maybe_prune()
                self._observe_lag()
                now = time.monotonic()
                if not self.stats.assigned:  # idle counts from the group's first assignment
                    idle_since = now
                elif (
                    idle_exit_s is not None
                    and now - idle_since >= idle_exit_s
                    and now >= recheck_at
                ):
                    if self._may_idle_out(now - idle_since, idle_exit_s):
                        break
                    recheck_at = now + IDLE_RECHECK_S
        self._observe_lag(force=True)
        return self.stats

    def _may_idle_out(self, idle_for: float, idle_exit_s: float) -> bool:
        """Whether a worker idle for ``idle_exit_s`` has read everything on its partitions.

        Idle time alone is not enough: a member just given partitions reads nothing until
        its first fetches answer (a busy broker takes seconds), and leaving then hands the
        partitions back unread.  So the brokers are asked what is left; a worker still short
        of the end waits, up to ``IDLE_GIVE_UP`` times the idle time (then the messages stay
        for the group's next member, as they would after any exit).  A broker that cannot
        say counts as messages left.
        """
        left: int | str
        try:
            left = kafka.unread(self.consumer, timeout_s=IDLE_RECHECK_S * 8)
        except JunctionError as exc:  # unknown: the broker is away, which is no end either
            left = exc.code
        if left == 0:
            return True
        if idle_for >= idle_exit_s * IDLE_GIVE_UP:
            log.warning("messages stayed unread; idling out", unread=left, group=self.group)
            return True
        return False

    def _commit_now(self, partitions: set[tuple[str, int]] | None = None) -> None:
        """Commit the offsets committed asynchronously (of ``partitions``, default all) again,
        and wait for it; a failure leaves the batch to be read again, with no second effect."""
        done = {
            tp: off for tp, off in self._offsets.items() if partitions is None or tp in partitions
        }
        for tp in done:
            del self._offsets[tp]
        try:
            kafka.commit(self.consumer, done)
        except JunctionError as exc:
            log.info("could not commit the last offsets; their batch is read again", error=exc.code)

    def _rewind(self, msgs: list[Message]) -> None:
        """Seek each partition of a failed batch back to its first message."""
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is None:
                topic, part, off = kafka.position(m)
                first.setdefault((topic, part), off)
        for (topic, part), off in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, part, off))
            except Exception:  # noqa: BLE001 - the partition moved away: its new owner re-reads
                log.info("could not rewind a partition; it was reassigned", topic=topic)

    def _observe_lag(self, *, force: bool = False) -> None:
        """Set ``junction_consumer_lag`` for the assigned partitions (from cached watermarks)."""
        now = time.monotonic()
        if not force and now < self._lag_at:
            return
        self._lag_at = now + LAG_EVERY_S
        try:
            for tp, _low, high in kafka.fetch_positions(self.consumer):
                if tp.offset >= 0 and high >= 0:
                    metrics.set_consumer_lag(
                        self.lag_label, tp.topic, tp.partition, high - tp.offset
                    )
        except Exception:  # noqa: BLE001 - metrics must never stop the work
            log.debug("could not read the consumer's lag")

    def _maybe_prune(self) -> None:
        if self.relay is None or time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        self.relay.prune()

    def process(self, msgs: list[Message]) -> None:
        """Run one consumed batch through the roles, write it, publish it, commit its offsets."""
        offsets: dict[tuple[str, int], int] = {}
        by_pipeline: dict[str, list[Item]] = {}
        effects = Effects()
        traced = tracing.enabled()
        for m in msgs:
            err = m.error()
            if err is not None:
                problem = kafka.consumer_error(err)
                if problem is not None:
                    raise problem
                continue
            topic, part, off = kafka.position(m)
            offsets[(topic, part)] = off + 1
            value = m.value()
            src = Source(topic, part, off, value or b"")
            read = self._readers.get(topic)
            try:
                item = read(value, src) if read is not None else decode(value, self.in_stage, src)
            except RecordError as exc:
                self._bus_quarantine(effects, m, src, exc)
                continue
            if traced:
                item.extra[traced_stage.HEADER_TRACEPARENT] = kafka.header(
                    m, traced_stage.HEADER_TRACEPARENT
                )
            if item.pipeline not in self.stages:
                if self._filtered and item.pipeline in self.cfg.pipelines:
                    continue  # another worker's pipeline: its own group reads it
                self._bus_quarantine(
                    effects,
                    m,
                    src,
                    RecordError(
                        f"no pipeline {item.pipeline!r} in this worker's config",
                        code="stage_message",
                    ),
                )
                continue
            by_pipeline.setdefault(item.pipeline, []).append(item)
        relay_rows: list[RelayRow] = []
        passed = 0
        for name, items in by_pipeline.items():
            if not traced:
                passed += self._run_roles(name, items, effects, relay_rows, None)
                continue
            # one group per trace, under a span that continues it
            for parent, group in traced_stage.groups(items):
                with traced_stage.stage_span(name, self.roles, parent, len(group)) as sp:
                    traced_stage.stamp(group)
                    passed += self._run_roles(name, group, effects, relay_rows, sp.traceparent)
        store, relay = self.store, self.relay
        # the previous batch's rows were sent from memory while this one was read: awaited
        # here, before this batch's write marks them (a failure reads this batch again)
        marks = relay.settled() if relay is not None else Marks([], None)
        all_new, span = True, None

        def write_relay(conn: Connection) -> None:
            nonlocal all_new, span
            if marks.rows:  # the rows the previous batch sent from memory, before the new ones
                assert relay is not None
                relay.mark_in(conn, marks.rows, marks.span)
            all_new = insert_rows(store, conn, relay_rows)
            if all_new:  # the ids they took (SQLite), so the next write marks them unread
                span = written_span(conn, len(relay_rows))

        effects.write(store, write_relay if relay_rows or marks.rows else None)
        if self._wal is not None:
            self._wal.committed()
        if relay is not None:
            relay.marked(len(marks.rows))
            scopes = {f"{t}:{p}" for t, p in offsets} | self._recover
            if all_new and not self._recover and scopes <= relay.clean:
                # the rows just written are all the scopes hold unsent: no read-back
                self.stats.published += relay.send_written(relay_rows, span)
            else:
                self.stats.published += relay.publish(scopes)
            self._recover.clear()
        # the effects and relay rows are committed: the offsets need no wait (ADR-0032)
        kafka.commit(self.consumer, offsets, wait=False)
        self._offsets.update(offsets)
        for q in effects.quarantined:
            metrics.observe_quarantine(q[0], q[1], q[4])
        self._observe_lag()
        self.stats.batches += 1
        self.stats.consumed += len(msgs)
        self.stats.passed += passed
        self.stats.quarantined += len(effects.quarantined)

    def _run_roles(
        self,
        name: str,
        items: list[Item],
        effects: Effects,
        relay_rows: list[RelayRow],
        traceparent: str | None,
    ) -> int:
        """Run this worker's roles over one pipeline's items; add their relay rows."""
        stages = self.stages[name]
        for role in self.roles:
            entered = len(items)
            with tracing.span(traced_stage.ROLE_SPAN[role], {"junction.records": entered}) as sp:
                items = stages.run(role, items, effects)
                sp.set("junction.passed", len(items))
            metrics.observe_stage(name, _METRIC_STAGE[role], entered, len(items))
        if self.out_stage is not None:
            relay_rows.extend(self._relay_rows(name, items, self.out_stage, traceparent))
        return len(items)

    def _relay_rows(
        self, name: str, items: list[Item], stage: str, traceparent: str | None = None
    ) -> list[RelayRow]:
        topic = self.out_topics[name]
        rows = []
        now = time.time()
        # each input partition's scope and its rows' dedupe stem, made once a batch
        stems: dict[tuple[str, int], tuple[str, str]] = {}
        for it in items:
            src = it.src
            assert src is not None  # consumed items always know their message
            stem = stems.get((src.topic, src.partition))
            if stem is None:
                scope = src.scope
                stem = stems[(src.topic, src.partition)] = (scope, f"{topic}|{scope}:")
            rows.append(
                relay_row(
                    stem[0],
                    topic,
                    it.subject,
                    encode(it, stage),
                    traced_stage.with_trace(headers_of(it, stage), traceparent),
                    stem[1] + str(src.offset),
                    now,
                )
            )
        return rows

    def _bus_quarantine(self, effects: Effects, m: Message, src: Source, exc: RecordError) -> None:
        named = kafka.header(m, HEADER_PIPELINE)
        pipeline = named if named in self.cfg.pipelines else BUS_PIPELINE
        effects.quarantined.append(
            quarantine_row(
                pipeline,
                "bus",
                f"{pipeline}:{src.topic}:{src.partition}:{src.offset}",
                exc,
                src.value,
                {"stage_message": f"{src.topic}:{src.partition}:{src.offset}"},
                None,
            )
        )

    def close(self) -> None:
        """Mark what was sent, leave the group (its partitions move at once), flush the producer."""
        try:
            if self.relay is not None:
                try:
                    self.relay.flush_marks()
                except JunctionError as exc:  # the next owner sends the unmarked rows again
                    log.warning("could not mark the sent stage messages", error=type(exc).__name__)
            self._commit_now()
            self.consumer.close()
        finally:
            if self.relay is not None:
                self.relay.producer.flush(5.0)
            if self._wal is not None:
                self._wal.close()
