"""The scheduler: decides when each pipeline runs, and runs it in a worker thread.

Every ``tick_s`` one coordinator task (on the event loop) reads the ``schedules`` and
``pipeline_state`` rows and polls the file drops, all in a worker thread, then starts runs:

* a **cron** pipeline (``source.schedule``, UTC; croniter syntax, a 6th field is seconds) fires
  when a slot newer than its ``last_fired_at`` has passed.  Only the latest slot fires, so a
  restart after downtime runs once, not once per missed slot.  Firing is one conditional
  ``UPDATE`` that also takes the pipeline's lease, so across processes each slot fires once;
* a **file** pipeline runs when files are ready in its folder (unless it has a schedule, which
  then decides when files are claimed), and first of all when claimed files wait in
  ``processing/`` from an earlier crash or stop;
* ``request_run`` (the API's "run now") queues a run of any pipeline.

A pipeline runs once at a time: in this process (one slot per pipeline) and across processes (the
lease in ``schedules``, renewed while the run lasts; a run whose lease was taken over because it
was not renewed in time stops after its current batch).  The lease is the per-pipeline leader
election (:mod:`junction.serve.leases` says why not an advisory lock): a run left unfinished by
a process that died is resumed at once by the scheduler that takes the lease over, after the
lease's TTL, or at once when the dead holder ran on this host.  Paused pipelines start nothing.
Runs are blocking code and go to daemon threads; on shutdown they stop between batches (each
batch is one transaction, so stopping there loses nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from croniter import croniter

from junction.api.context import RunRequest
from junction.core import metrics
from junction.core.errors import ConfigError, JunctionError, RetryableError
from junction.core.logging import get_logger
from junction.pipeline.hub import Hub
from junction.pipeline.runner import PipelineRunner, RunInterrupted, RunSummary
from junction.serve.filedrop import FileDrop, is_file_pipeline
from junction.serve.leases import PipelineLeases
from junction.serve.threads import in_daemon_thread

log = get_logger(__name__)

MAX_BACKOFF_S = 60.0


def due_slot(expr: str, last_fired: float | None, now: float) -> float | None:
    """The latest slot of ``expr`` before ``now`` when it is newer than ``last_fired``, else None.

    Missed slots collapse into this one: after a day of downtime an hourly schedule fires once.
    """
    slot = float(croniter(expr, now).get_prev(float))
    if last_fired is None or slot > last_fired:
        return slot
    return None


@dataclass(eq=False)
class _Slot:
    """One pipeline as the scheduler sees it."""

    name: str
    schedule: str | None
    runner: PipelineRunner
    drop: FileDrop | None
    busy: bool = False
    wanted: str | None = None  # why a run is queued: manual | files | resume
    retry_at: float = 0.0
    failures: int = 0
    lease_lost: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """Cron schedules, file drops and "run now" for every pipeline of one hub."""

    def __init__(self, hub: Hub, leases: PipelineLeases, *, tick_s: float = 0.5) -> None:
        """Schedule ``hub``'s pipelines, coordinating with other processes through ``leases``."""
        self.hub = hub
        self.leases = leases
        self.tick_s = tick_s
        self.stop_runs = threading.Event()
        self._slots: dict[str, _Slot] = {}
        self._paused: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()

    # setup (blocking; call from a worker thread)

    def prepare(self) -> None:
        """Check schedules, compile every pipeline once and create the store rows.

        Raises:
            ConfigError: a schedule is not a cron expression, a pipeline does not compile, or a
                drop folder cannot be used.
        """
        cfg = self.hub.cfg
        for name, p in cfg.pipelines.items():
            expr = p.source.schedule
            if expr is not None and not croniter.is_valid(expr):
                raise ConfigError(f"pipeline {name}: schedule {expr!r} is not a cron expression")
            drop = None
            if is_file_pipeline(p, self.hub.registry):
                drop = FileDrop.for_pipeline(name, p, self.hub.registry)
                drop.prepare()
            # the service's own runner: API threads may use hub.runner(name) meanwhile
            runner = PipelineRunner(
                name,
                drop.processing_config() if drop else p,
                cfg,
                self.hub.store,
                self.hub.registry,
            )
            self._slots[name] = _Slot(name, expr, runner, drop)
        scheduled = [n for n, s in self._slots.items() if s.schedule is not None]
        self.leases.ensure(self._slots, scheduled, time.time())

    def describe(self) -> dict[str, list[str]]:
        """Which pipelines are scheduled, watched (file drops) or manual only."""
        out: dict[str, list[str]] = {"scheduled": [], "watched": [], "manual": []}
        for s in self._slots.values():
            if s.schedule is not None:
                out["scheduled"].append(s.name)
            if s.drop is not None:
                out["watched"].append(s.name)
            if s.schedule is None and s.drop is None:
                out["manual"].append(s.name)
        return out

    # the SchedulerControl protocol (called from API threads)

    def request_run(self, pipeline: str) -> RunRequest:
        """Queue a run of ``pipeline``; "running" when one is queued already."""
        slot = self._slot(pipeline)
        if pipeline in self._paused:
            return "paused"
        with self._lock:
            if slot.wanted is not None:
                return "running"
            slot.wanted = "manual"
        self._wake_up()
        return "queued"

    def pause(self, pipeline: str) -> None:
        """Start no more runs of ``pipeline`` until resumed (the running one finishes)."""
        self._slot(pipeline)
        self.leases.set_paused(pipeline, True)
        self._paused.add(pipeline)

    def resume(self, pipeline: str) -> None:
        """Let ``pipeline`` run again; a schedule slot missed meanwhile fires once."""
        self._slot(pipeline)
        self.leases.set_paused(pipeline, False)
        self._paused.discard(pipeline)
        self._wake_up()

    def ready(self) -> bool:
        """True while the scheduler runs and is not shutting down."""
        return self._task is not None and not self._task.done() and not self._stopping

    def _slot(self, pipeline: str) -> _Slot:
        slot = self._slots.get(pipeline)
        if slot is None:
            raise ConfigError(f"no pipeline named {pipeline!r}")
        return slot

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

    # the coordinator (event loop)

    def start(self) -> None:
        """Start the coordinator task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._coordinate(), name="scheduler")

    async def _coordinate(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                grants = await asyncio.to_thread(self._tick)
            except JunctionError as exc:
                log.warning("scheduler tick failed", error=type(exc).__name__, code=exc.code)
                grants = []
            except Exception as exc:  # noqa: BLE001 - the coordinator must outlive a bad tick
                log.error("scheduler tick failed", error=type(exc).__name__)
                grants = []
            for slot, reason, due in grants:
                if self._stopping:
                    await asyncio.to_thread(self.leases.release, slot.name)
                    continue
                slot.busy = True
                task = asyncio.create_task(self._run(slot, reason, due), name=f"run-{slot.name}")
                self._runs.add(task)
                task.add_done_callback(self._runs.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick_s)
            self._wake.clear()

    def _tick(self) -> list[tuple[_Slot, str, float | None]]:
        """Poll drops, read schedule state and take the leases of runs to start (blocking)."""
        fired, paused = self.leases.snapshot()
        self._paused = paused
        now = time.time()
        idle = [s.name for s in self._slots.values() if not s.busy and s.name not in paused]
        left_behind = self.leases.abandoned(idle, now) if idle and not self._stopping else set()
        grants: list[tuple[_Slot, str, float | None]] = []
        for slot in self._slots.values():
            ready = slot.drop.poll() if slot.drop is not None else False
            if self._stopping or slot.busy or slot.name in paused:
                continue
            with self._lock:
                if slot.drop is not None and slot.wanted is None:
                    if slot.drop.leftovers():
                        slot.wanted = "resume"
                    elif ready and not slot.drop.scheduled:
                        slot.wanted = "files"
                wanted = slot.wanted
            if wanted is not None:
                if now >= slot.retry_at and self._acquire(slot.name, now):
                    with self._lock:
                        slot.wanted = None
                    grants.append((slot, wanted, None))
                continue
            if slot.name in left_behind and now >= slot.retry_at and self._acquire(slot.name, now):
                # its holder died (or stopped renewing) mid-run: resume now, not at the next slot
                log.info("abandoned run taken over", pipeline=slot.name)
                grants.append((slot, "takeover", None))
                continue
            if slot.schedule is None or now < slot.retry_at:
                continue  # a source that asked us to wait (Retry-After) is not polled before
            due = due_slot(slot.schedule, fired.get(slot.name), now)
            if due is not None and self._acquire(slot.name, now, due):
                at = datetime.fromtimestamp(due, UTC).isoformat()
                log.info("schedule fired", pipeline=slot.name, slot=at)
                metrics.observe_schedule_fire(slot.name)
                grants.append((slot, "schedule", due))
        return grants

    def _acquire(self, pipeline: str, now: float, slot: float | None = None) -> bool:
        """Take the lease (firing ``slot`` if given); a dead local holder is not waited for."""
        for _ in range(2):
            if slot is None:
                if self.leases.try_acquire(pipeline, now):
                    return True
            elif self.leases.try_fire(pipeline, slot, now):
                return True
            if not self.leases.take_over_dead(pipeline, now):
                return False
            log.info("lease of a stopped process taken over", pipeline=pipeline)
        return False

    async def _run(self, slot: _Slot, reason: str, due: float | None) -> None:
        slot.lease_lost.clear()
        heartbeat = asyncio.create_task(self._heartbeat(slot))
        try:
            summaries = await in_daemon_thread(
                partial(self._execute, slot, reason), f"run-{slot.name}"
            )
        except RunInterrupted:
            if slot.lease_lost.is_set():
                log.warning("run stopped: its lease was lost", pipeline=slot.name, reason=reason)
            else:
                log.info("run stopped between batches", pipeline=slot.name, reason=reason)
        except Exception as exc:  # noqa: BLE001 - a failed run is logged and retried later
            slot.failures += 1
            backoff = min(MAX_BACKOFF_S, 2.0**slot.failures)
            if isinstance(exc, RetryableError) and exc.retry_after:
                backoff = max(backoff, exc.retry_after)  # e.g. a CRM's API limit resets later
            slot.retry_at = time.time() + backoff
            code = exc.code if isinstance(exc, JunctionError) else "internal_error"
            log.warning(
                "run failed",
                pipeline=slot.name,
                reason=reason,
                error=type(exc).__name__,
                code=code,
                retry_in_s=backoff,
            )
        else:
            slot.failures = 0
            for s in summaries:
                counts = {k: v for k, v in s.as_dict().items() if k != "pipeline"}
                log.info("run finished", pipeline=slot.name, reason=reason, **counts)
        finally:
            heartbeat.cancel()
            try:
                await asyncio.to_thread(self.leases.release, slot.name)
            except JunctionError as exc:  # it expires on its own
                log.warning("lease release failed", pipeline=slot.name, code=exc.code)
            slot.busy = False
            self._wake_up()

    def _execute(self, slot: _Slot, reason: str) -> list[RunSummary]:
        if self.stop_runs.is_set() or slot.lease_lost.is_set():
            raise RunInterrupted
        progress = partial(self._progress, slot)
        if slot.drop is not None:
            return slot.drop.run_cycle(slot.runner, reason, self.stop_runs, progress)
        return [slot.runner.run_once(progress)]

    def _progress(self, slot: _Slot, _n: int) -> None:
        # called by the runner after each committed batch: the place to stop on shutdown, and
        # when another process took the lease over (this one stopped renewing in time), so two
        # processes never go on running one pipeline
        if self.stop_runs.is_set() or slot.lease_lost.is_set():
            raise RunInterrupted

    async def _heartbeat(self, slot: _Slot) -> None:
        pipeline = slot.name
        while True:
            await asyncio.sleep(self.leases.ttl_s / 3)
            try:
                kept = await asyncio.to_thread(self.leases.renew, pipeline)
            except JunctionError as exc:
                log.warning("lease renewal failed", pipeline=pipeline, code=exc.code)
                continue
            if not kept:
                log.warning("pipeline lease lost", pipeline=pipeline)
                slot.lease_lost.set()
                return

    # shutdown

    async def stop(self, timeout: float) -> tuple[int, int]:
        """Start nothing new, stop runs between batches; return (runs stopped, runs still going).

        Waits at most ``timeout`` seconds.
        """
        self._stopping = True
        self.stop_runs.set()
        self._wake_up()
        deadline = time.monotonic() + timeout
        if self._task is not None:
            await asyncio.wait([self._task], timeout=max(0.0, deadline - time.monotonic()))
        runs = set(self._runs)
        if not runs:
            return 0, 0
        _, pending = await asyncio.wait(runs, timeout=max(0.0, deadline - time.monotonic()))
        return len(runs) - len(pending), len(pending)

    def close(self) -> None:
        """Release the runners (connectors, worker processes); call once no run is going."""
        for slot in self._slots.values():
            slot.runner.close()
