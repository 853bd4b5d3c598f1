"""The delivery worker as the service runs it: continuously, restarted after errors, and with
the leases it holds released on shutdown.

``DeliveryWorker`` leases due deliveries (``lease_until``) before sending them.  A lease that is
never recorded (the process stops mid-send) would hold its deliveries back until it expires, so
the service's store remembers which leases it holds and gives them back when it stops.  Giving back
a lease of a delivery that was in fact sent is safe: the retry carries the same idempotency key.

A lease is forgotten when it ends: its outcome recorded (sent, retried, dead, or a gate's
deferral, skip, hold or suppression), the worker giving the claim back (``release_claims``), or
its expiry (a row the worker dropped, a recording that failed; another worker may lease the row
then, and an API retry or an erasure may have changed it meanwhile).  Giving back on shutdown
touches only rows whose ``lease_until`` is still the value this process set.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import update

from junction.core.errors import JunctionError
from junction.core.logging import get_logger
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import DeliveryWorker
from junction.store import tables as t
from junction.store.outbox import HealthPolicy
from junction.store.repo import Row, Store
from outbound.base import OutboundChannel

log = get_logger(__name__)


class TrackedOutbox(Store):
    """The hub's store (same engine), remembering the delivery leases this process holds."""

    def __init__(self, store: Store) -> None:
        """Share ``store``'s engine, and its privacy (one key cache, its configured size)."""
        super().__init__(store.engine, store.privacy_in_use())
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim_deliveries(
        self,
        limit: int,
        lease_s: float,
        *,
        now: float | None = None,
        slots: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Lease due deliveries, as the store does, and remember each lease (its expiry)."""
        rows = super().claim_deliveries(limit, lease_s, now=now, slots=slots)
        with self._lock:
            self._prune(time.time())
            for r in rows:
                self._held[r["id"]] = float(r["lease_until"])
        return rows

    def record_attempts(
        self,
        outcomes: Sequence[dict[str, Any]],
        quarantined: Sequence[Row],
        *,
        health: HealthPolicy | None = None,
        recheck: bool = False,
    ) -> set[str]:
        """Record attempts, as the store does; their leases are no longer held."""
        disabled = super().record_attempts(outcomes, quarantined, health=health, recheck=recheck)
        with self._lock:
            for o in outcomes:
                self._held.pop(o["delivery_id"], None)
        return disabled

    def release_claims(self, leases: Sequence[tuple[str, float]]) -> int:
        """Give back claims the worker will not send, as the store does; forget them."""
        released = super().release_claims(leases)
        with self._lock:
            for delivery_id, until in leases:
                if self._held.get(delivery_id) == until:
                    del self._held[delivery_id]
        return released

    def _prune(self, now: float) -> None:
        """Forget leases that have run out (the caller holds the lock)."""
        expired = [d for d, until in self._held.items() if until < now]
        for delivery_id in expired:
            del self._held[delivery_id]

    @property
    def held(self) -> int:
        """How many leases are held now (unexpired ones)."""
        with self._lock:
            self._prune(time.time())
            return len(self._held)

    def release_held(self) -> int:
        """Give back every lease still held (pending deliveries only); return how many.

        A row is touched only while its ``lease_until`` is the value this process's claim set:
        a lease that ended meanwhile (recorded elsewhere, retried by hand, or run out and taken
        by another worker) is left alone.
        """
        now = time.time()
        with self._lock:
            held, self._held = self._held, {}
        by_until: dict[float, list[str]] = defaultdict(list)
        for delivery_id, until in held.items():
            if until >= now:
                by_until[until].append(delivery_id)
        released = 0
        with self.begin() as conn:
            for until, ids in by_until.items():
                c = t.deliveries.c
                released += conn.execute(
                    update(t.deliveries)
                    .where(c.id.in_(ids), c.status == "pending", c.lease_until == until)
                    .values(lease_until=None)
                ).rowcount
        return released


class DeliveryService:
    """Runs a ``DeliveryWorker`` until stopped; a failing store only pauses it."""

    def __init__(
        self,
        outbox: TrackedOutbox,
        channels: Mapping[str, OutboundChannel],
        policy: DeliveryConfig,
        **options: Any,
    ) -> None:
        """Deliver from ``outbox`` through ``channels`` with retry ``policy``.

        ``options`` go to the ``DeliveryWorker`` (gates, routes, sweeps, alerts, limits).
        """
        self.outbox = outbox
        self.worker = DeliveryWorker(outbox, channels, policy, **options)
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start delivering on the running loop."""
        self._task = asyncio.create_task(self._forever(), name="deliveries")

    async def _forever(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                await self.worker.run(stop=self.stopping)
                backoff = 1.0
            except JunctionError as exc:
                log.warning("delivery worker paused", error=type(exc).__name__, code=exc.code)
            except Exception as exc:  # noqa: BLE001 - the worker must come back after a bug
                log.error("delivery worker failed", error=type(exc).__name__)
            else:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30.0)

    async def stop(self, timeout: float) -> bool:
        """Finish the sends in flight (at most ``timeout`` s), then stop; True if it finished.

        Sends still running at the deadline are cancelled; their leases are released by
        :meth:`TrackedOutbox.release_held`.
        """
        self.stopping.set()
        task = self._task
        if task is None:
            return True
        done, _ = await asyncio.wait([task], timeout=max(0.0, timeout))
        if done:
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=1.0)
        return False

    async def aclose(self) -> None:
        """Close the channels."""
        await self.worker.aclose()
