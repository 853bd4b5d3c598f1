"""Pipeline leases and schedule state in the store (``schedules`` and ``pipeline_state``).

One row per pipeline in ``schedules`` holds the last cron slot that fired and a lease: the process
that runs the pipeline owns ``lease_owner`` until ``lease_until`` and renews it while it works.
Every change is one conditional ``UPDATE`` (compare-and-set), so two ``junction serve`` processes
on one PostgreSQL (or one SQLite file) never fire a slot twice or run one pipeline at once: the
database serializes the two updates of the row and the second one matches nothing.

An owner is ``host:pid:nonce``.  A lease left by a process that died on this host (a crash, a
SIGKILL) is taken over at once instead of after its TTL, so a restart resumes immediately.

This is the scheduler's leader election, per pipeline: the lease holder is the one process that
runs the pipeline, and the slot column fences each firing.  ``pg_try_advisory_lock`` was weighed
and not used: a session lock lives as long as one connection (it needs a dedicated connection
outside the pool, breaks behind a transaction-pooling PgBouncer, and after a network partition
both sides can believe they lead until TCP keepalive notices), it does not exist on SQLite, and
it would still need the slot compare-and-set to keep a deposed leader from firing a slot twice.
A lease whose holder died is taken over after ``ttl_s`` (at once on the same host), and the
run it left unfinished resumes right away (:meth:`PipelineLeases.abandoned`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from junction.store import tables as t
from junction.store.repo import Store

DEFAULT_TTL_S = 15.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class PipelineLeases:
    """This process's view of the ``schedules`` and ``pipeline_state`` rows."""

    @classmethod
    def for_this_process(cls, store: Store, ttl_s: float = DEFAULT_TTL_S) -> PipelineLeases:
        """Leases owned by ``host:pid:nonce`` of the calling process."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return cls(store, owner, ttl_s)

    def __init__(self, store: Store, owner: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        """Lease rows for ``owner`` (unique per process) for ``ttl_s`` seconds at a time."""
        self.store = store
        self.owner = owner
        self.ttl_s = ttl_s

    def _insert_ignore(self, table: Table, rows: list[dict[str, Any]]) -> Any:
        dialect = postgresql if self.store.dialect == "postgresql" else sqlite
        return dialect.insert(table).values(rows).on_conflict_do_nothing()

    def ensure(self, pipelines: Iterable[str], scheduled: Iterable[str], now: float) -> None:
        """Create missing rows; a schedule seen for the first time counts from ``now``.

        A first start therefore waits for the next slot instead of firing for the past.
        """
        names = sorted(set(pipelines))
        cron = sorted(set(scheduled))
        if not names:
            return
        with self.store.begin() as conn:
            conn.execute(
                self._insert_ignore(
                    t.schedules,
                    [{"pipeline": n, "last_fired_at": now if n in cron else None} for n in names],
                )
            )
            if cron:
                conn.execute(
                    update(t.schedules)
                    .where(t.schedules.c.pipeline.in_(cron), t.schedules.c.last_fired_at.is_(None))
                    .values(last_fired_at=now)
                )

    def snapshot(self) -> tuple[dict[str, float | None], set[str]]:
        """Return each pipeline's last fired slot and the set of paused pipelines."""
        with self.store.begin() as conn:
            fired = {
                r[0]: (None if r[1] is None else float(r[1]))
                for r in conn.execute(select(t.schedules.c.pipeline, t.schedules.c.last_fired_at))
            }
            paused = {
                r[0]
                for r in conn.execute(
                    select(t.pipeline_state.c.pipeline).where(t.pipeline_state.c.paused.is_(True))
                )
            }
        return fired, paused

    def _free(self, now: float) -> Any:
        c = t.schedules.c
        return or_(c.lease_until.is_(None), c.lease_until < now, c.lease_owner == self.owner)

    def try_acquire(self, pipeline: str, now: float | None = None) -> bool:
        """Take the pipeline's lease if nobody else holds it; True when this process has it."""
        now = time.time() if now is None else now
        with self.store.begin() as conn:
            n = conn.execute(
                update(t.schedules)
                .where(t.schedules.c.pipeline == pipeline, self._free(now))
                .values(lease_owner=self.owner, lease_until=now + self.ttl_s)
            ).rowcount
        return n == 1

    def try_fire(self, pipeline: str, slot: float, now: float | None = None) -> bool:
        """Fire cron ``slot`` and take the lease in one update; True for exactly one process.

        The update matches only while the row's last slot is older than ``slot`` and the lease is
        free, so a slot fires once however many processes try it.
        """
        now = time.time() if now is None else now
        c = t.schedules.c
        with self.store.begin() as conn:
            n = conn.execute(
                update(t.schedules)
                .where(
                    c.pipeline == pipeline,
                    or_(c.last_fired_at.is_(None), c.last_fired_at < slot),
                    self._free(now),
                )
                .values(last_fired_at=slot, lease_owner=self.owner, lease_until=now + self.ttl_s)
            ).rowcount
        return n == 1

    def take_over_dead(self, pipeline: str, now: float | None = None) -> bool:
        """Free a lease held by a process of this host that is gone; True if one was freed.

        Only a lease whose owner names this host and a pid that no longer runs (or this very
        pid with another nonce: an earlier life of this process, e.g. in a restarted container)
        is freed, with a compare-and-set on the owner, so a live holder is never displaced.
        """
        now = time.time() if now is None else now
        c = t.schedules.c
        with self.store.begin() as conn:
            row = conn.execute(
                select(c.lease_owner, c.lease_until).where(c.pipeline == pipeline)
            ).first()
            if row is None or row[0] is None or row[1] is None or row[1] < now:
                return False
            holder = str(row[0])
            if holder == self.owner or not self._local_and_gone(holder):
                return False
            n = conn.execute(
                update(t.schedules)
                .where(c.pipeline == pipeline, c.lease_owner == holder)
                .values(lease_owner=None, lease_until=None)
            ).rowcount
            return n == 1

    def _local_and_gone(self, holder: str) -> bool:
        """Whether ``holder`` names a process of this host that no longer runs (or an earlier
        life of this pid)."""
        host, _, rest = holder.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        return pid == os.getpid() or not _pid_alive(pid)

    def abandoned(self, pipelines: Iterable[str], now: float | None = None) -> set[str]:
        """Pipelines whose run lease was left behind by a holder that stopped without giving it
        back: a process that died mid-run (SIGKILL, a lost machine) or stopped renewing.

        Such a lease has an owner but has expired, or its owner is a dead process of this host.
        Its run did not finish, so the scheduler that takes the lease over runs the pipeline at
        once instead of waiting for the next slot: the run resumes from the last committed
        cursor.
        """
        names = sorted(set(pipelines))
        if not names:
            return set()
        now = time.time() if now is None else now
        c = t.schedules.c
        with self.store.begin() as conn:
            rows = conn.execute(
                select(c.pipeline, c.lease_owner, c.lease_until).where(
                    c.pipeline.in_(names), c.lease_owner.is_not(None), c.lease_owner != self.owner
                )
            ).all()
        return {
            str(name)
            for name, holder, until in rows
            if until is None or until < now or self._local_and_gone(str(holder))
        }

    def renew(self, pipeline: str, now: float | None = None) -> bool:
        """Extend a lease this process holds; False when it was lost (it expired and was taken)."""
        now = time.time() if now is None else now
        c = t.schedules.c
        with self.store.begin() as conn:
            n = conn.execute(
                update(t.schedules)
                .where(c.pipeline == pipeline, c.lease_owner == self.owner)
                .values(lease_until=now + self.ttl_s)
            ).rowcount
        return n == 1

    def release(self, pipeline: str | None = None) -> int:
        """Give up this process's lease on ``pipeline`` (or all of them); return how many."""
        c = t.schedules.c
        q = update(t.schedules).where(c.lease_owner == self.owner)
        if pipeline is not None:
            q = q.where(c.pipeline == pipeline)
        with self.store.begin() as conn:
            return int(conn.execute(q.values(lease_owner=None, lease_until=None)).rowcount)

    def set_paused(self, pipeline: str, paused: bool) -> None:
        """Pause or resume a pipeline (an upsert of its ``pipeline_state`` row)."""
        now = time.time()
        with self.store.begin() as conn:
            # insert-if-missing, then update: right whichever process created the row
            conn.execute(
                self._insert_ignore(
                    t.pipeline_state, [{"pipeline": pipeline, "paused": paused, "updated_at": now}]
                )
            )
            conn.execute(
                update(t.pipeline_state)
                .where(t.pipeline_state.c.pipeline == pipeline)
                .values(paused=paused, updated_at=now)
            )

    def is_paused(self, pipeline: str) -> bool:
        """Whether ``pipeline`` is paused."""
        with self.store.begin() as conn:
            v = conn.execute(
                select(t.pipeline_state.c.paused).where(t.pipeline_state.c.pipeline == pipeline)
            ).scalar()
        return bool(v)
