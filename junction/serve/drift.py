"""Scheduled drift checks under ``junction serve``: one task per pipeline with ``scoring.drift``.

Each pipeline's checks fall on slots of ``drift.every_s`` seconds (multiples of it since the
epoch).  A slot is fired through the ``schedules`` table like a cron slot
(:meth:`~junction.serve.leases.PipelineLeases.try_fire`), on a row of its own named
``drift:<pipeline>`` (a pipeline name cannot hold ``:``), so across processes on one store each
slot is checked once, and a drift check never holds or waits for the pipeline's run lease.  The
first start checks at once (the row has no fired slot yet); a restart within a slot does not
check again.  The lease is given back as soon as the check ends: the fired slot, not the
lease, keeps other processes from repeating it.  A process that dies during a check loses that
slot's check; the next slot runs as usual.

The check itself (:func:`~junction.pipeline.drift_job.run_drift_check`: blocking store reads and
numpy) runs in a daemon thread, so it never blocks the event loop nor holds the process at exit;
its one write transaction rolls back if the process exits first.

Retraining: when a check ends in ``alert`` and the pipeline's ``drift.retrain`` is set, the
same task then retrains the model (:func:`~junction.pipeline.retrain.retrain`, in another
daemon thread) before it gives the lease back, so of the processes sharing a store only the one
that fired the slot retrains.  A drifted version is retrained at most once a day
(:func:`~junction.pipeline.retrain.recently_retrained`): a drift that lasts, or a new version
the gate keeps in staging, does not write a version every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from functools import partial

from junction.core.errors import JunctionError
from junction.core.logging import get_logger
from junction.pipeline.config import DriftConfig, HubConfig
from junction.pipeline.drift_job import run_drift_check
from junction.pipeline.retrain import recently_retrained, retrain
from junction.serve.leases import PipelineLeases
from junction.serve.threads import in_daemon_thread
from junction.store.repo import Store

log = get_logger(__name__)

LEASE_PREFIX = "drift:"


def lease_name(pipeline: str) -> str:
    """The ``schedules`` row of ``pipeline``'s drift checks."""
    return f"{LEASE_PREFIX}{pipeline}"


def slot_of(now: float, every_s: float) -> float:
    """The start of the drift slot ``now`` falls in."""
    return math.floor(now / every_s) * every_s


class DriftChecks:
    """The periodic drift checks of one hub's pipelines."""

    def __init__(
        self,
        cfg: HubConfig,
        store: Store,
        leases: PipelineLeases,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Check every pipeline of ``cfg`` whose scoring has ``drift`` set."""
        self.cfg = cfg
        self.store = store
        self.leases = leases
        self.clock = clock
        self.checks: dict[str, DriftConfig] = {
            name: p.scoring.drift
            for name, p in cfg.pipelines.items()
            if p.scoring is not None and p.scoring.drift is not None
        }
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()

    def prepare(self) -> None:
        """Create the ``schedules`` rows (blocking; call from a worker thread)."""
        if self.checks:
            self.leases.ensure([lease_name(n) for n in self.checks], [], self.clock())

    def start(self) -> None:
        """Start one task per checked pipeline on the running loop."""
        for name, drift in self.checks.items():
            self._tasks.append(asyncio.create_task(self._loop(name, drift), name=f"drift-{name}"))

    async def _loop(self, pipeline: str, drift: DriftConfig) -> None:
        while not self._stopping.is_set():
            now = self.clock()
            slot = slot_of(now, drift.every_s)
            try:
                fired = await asyncio.to_thread(
                    self.leases.try_fire, lease_name(pipeline), slot, now
                )
            except JunctionError as exc:
                log.warning("drift schedule failed", pipeline=pipeline, code=exc.code)
                fired = False
            if fired:
                check = asyncio.create_task(self._check(pipeline, now))
                self._running.add(check)
                check.add_done_callback(self._running.discard)
                await asyncio.wait([check])
            wait = slot + drift.every_s - self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(0.05, wait))

    async def _check(self, pipeline: str, now: float) -> None:
        try:
            report = await in_daemon_thread(
                partial(run_drift_check, self.store, self.cfg, pipeline, now), f"drift-{pipeline}"
            )
        except Exception as exc:  # noqa: BLE001 - a failed check is logged; the next slot retries
            code = exc.code if isinstance(exc, JunctionError) else "internal_error"
            log.warning(
                "drift check failed", pipeline=pipeline, error=type(exc).__name__, code=code
            )
        else:
            if report.status in ("warn", "alert"):
                log.warning(
                    "model drift", pipeline=pipeline, status=report.status, worst=report.worst
                )
            if report.status == "alert" and self.checks[pipeline].retrain:
                await self._retrain(pipeline, str(report.model), report.model_version, now)
        finally:
            try:
                await asyncio.to_thread(self.leases.release, lease_name(pipeline))
            except JunctionError as exc:  # it expires on its own
                log.warning("lease release failed", pipeline=lease_name(pipeline), code=exc.code)

    def _retrain_now(self, pipeline: str, model: str, version: str | None, now: float) -> str:
        if recently_retrained(self.store, pipeline, model, version, now):
            return "retrained within a day"
        # training may outlast the check's lease; a lost lease means another process has it
        if not self.leases.renew(lease_name(pipeline), self.clock()):
            return "lease lost"
        result = retrain(self.store, self.cfg, pipeline, now=self.clock(), actor="system:drift")
        return result.outcome

    async def _retrain(self, pipeline: str, model: str, version: str | None, now: float) -> None:
        try:
            outcome = await in_daemon_thread(
                partial(self._retrain_now, pipeline, model, version, now),
                f"retrain-{pipeline}",
            )
        except Exception as exc:  # noqa: BLE001 - logged; the next alert retries
            code = exc.code if isinstance(exc, JunctionError) else "internal_error"
            log.warning("retrain failed", pipeline=pipeline, error=type(exc).__name__, code=code)
        else:
            if outcome not in ("promoted", "staged", "failed"):
                log.info("retrain skipped", pipeline=pipeline, reason=outcome)

    async def stop(self, timeout: float) -> bool:
        """Start no more checks; wait up to ``timeout`` s for one running; True when none is."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:  # a check outlasting the bound: its thread is a daemon
                task.cancel()
        left = max(0.0, deadline - time.monotonic())
        if self._running:
            _, still = await asyncio.wait(set(self._running), timeout=left)
            return not still
        return True


__all__ = ["LEASE_PREFIX", "DriftChecks", "lease_name", "slot_of"]
