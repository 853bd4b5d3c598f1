"""``junction worker``: one process running stage roles until SIGTERM (ADR-0018).

- ``--role ingest``: for each pipeline whose lease this process holds (one ingest process per
  pipeline at a time, ``junction.serve.leases``), read the source from its cursor and pass the
  rows on to the raw topic; then wait ``interval_s`` and read again.
- ``--role normalize|score|deliver`` (or a contiguous run of them, fused in one process): a
  member of the role's consumer group (:class:`~junction.pipeline.stages.worker.StageWorker`).
  A worker with the deliver role also sends the outbox (the delivery worker, as ``junction
  run`` does), in a thread beside the consumer.

SIGTERM (or SIGINT) stops between batches: everything committed stays committed, and the group
hands the partitions to the other members at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from junction.core.errors import JunctionError
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline.config import HubConfig
from junction.pipeline.hub import Hub
from junction.pipeline.runner import RunInterrupted
from junction.pipeline.stages import bus as kafka
from junction.pipeline.stages.ingest import IngestRunner
from junction.pipeline.stages.relay import Relay
from junction.pipeline.stages.worker import StageWorker, WorkerStats, require_bus
from junction.serve.leases import PipelineLeases

log = get_logger(__name__)
RENEW_EVERY_S = 3.0


@dataclass
class IngestStats:
    """What an ingest worker did."""

    runs: int = 0
    read: int = 0
    passed: int = 0
    quarantined: int = 0
    skipped: int = 0  # pipelines another process held the lease of


def run_ingest(
    hub: Hub,
    stop: threading.Event,
    *,
    pipelines: list[str] | None = None,
    interval_s: float = 5.0,
    once: bool = False,
    registry: Registry = default_registry,
) -> IngestStats:
    """Ingest every selected pipeline whose lease this process gets, until ``stop``."""
    cfg: HubConfig = hub.cfg
    bus = require_bus(cfg)
    names = pipelines or list(cfg.pipelines)
    store = hub.store
    relay = Relay(store, kafka.make_producer(bus), timeout_s=bus.publish_timeout_s)
    runners: dict[str, IngestRunner] = {}
    leases = PipelineLeases.for_this_process(store)
    leases.ensure(names, [], time.time())
    stats = IngestStats()
    try:
        for name in names:
            runners[name] = IngestRunner(name, cfg, store, relay, registry)
        kafka.ensure_topics(bus, {r.topic for r in runners.values()})
        while not stop.is_set():
            for name, runner in runners.items():
                if stop.is_set():
                    break
                if not (leases.try_acquire(name) or leases.take_over_dead(name)):
                    stats.skipped += 1
                    continue
                _ingest_once(runner, leases, stop, stats)
            if once:
                break
            stop.wait(interval_s)
    finally:
        leases.release()
        for runner in runners.values():
            runner.close()
        relay.producer.flush(5.0)
    return stats


def _ingest_once(
    runner: IngestRunner, leases: PipelineLeases, stop: threading.Event, stats: IngestStats
) -> None:
    renew_at = time.monotonic() + RENEW_EVERY_S

    def progress(_n: int) -> None:
        nonlocal renew_at
        if stop.is_set():
            raise RunInterrupted
        if time.monotonic() >= renew_at:
            renew_at = time.monotonic() + RENEW_EVERY_S
            if not leases.renew(runner.name):
                raise RunInterrupted  # another process took the pipeline over

    try:
        runner.recover()
        summary = runner.run_once(progress)
    except RunInterrupted:
        return
    except JunctionError as exc:
        if not exc.retryable:
            raise
        log.warning(
            "ingest run failed; retrying later", pipeline=runner.name, error=type(exc).__name__
        )
        return
    stats.runs += 1
    stats.read += summary.read
    stats.passed += summary.stored
    stats.quarantined += summary.quarantined


def _deliver_loop(hub: Hub, stop: threading.Event, every_s: float = 0.5) -> None:
    while not stop.is_set():
        try:
            stats = hub.deliver()
        except JunctionError as exc:
            log.warning("delivery pass failed", error=type(exc).__name__)
            stop.wait(5.0)
            continue
        if not (stats.delivered or stats.dead):
            stop.wait(every_s)


def run_stage_worker(
    hub: Hub,
    roles: tuple[str, ...],
    stop: threading.Event,
    *,
    pipelines: list[str] | None = None,
    idle_exit_s: float | None = None,
    on_batch: Callable[[WorkerStats], None] | None = None,
) -> WorkerStats:
    """Run a consumer role (or a fused run of them) until ``stop`` or idle; return its stats."""
    worker = StageWorker(hub.cfg, hub.store, roles, pipelines=pipelines)
    sender: threading.Thread | None = None
    if "deliver" in roles:
        sender = threading.Thread(
            target=_deliver_loop, args=(hub, stop), name="junction-deliver", daemon=True
        )
        sender.start()
    try:
        return worker.run(stop, idle_exit_s=idle_exit_s, on_batch=on_batch)
    finally:
        worker.close()
        if sender is not None:
            stop.set()
            sender.join(timeout=30)
