"""What ``junction status`` reads from the store: backlog figures a glance should show."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from junction.store import tables as t
from junction.store.relay_marks import unpublished
from junction.store.repo import Store


@dataclass(frozen=True)
class Backlog:
    """The store's queues: what waits, how old the oldest is, what is stuck."""

    pending_deliveries: int
    oldest_due_s: float | None  # age of the oldest delivery that is due now (the outbox lag)
    dead_deliveries: int
    open_quarantine: dict[tuple[str, str], int]  # (pipeline, stage) → open entries
    unpublished_relay: int  # stage messages committed but not yet on their topic
    leases: dict[str, str | None]  # pipeline → the process that holds its lease, if any
    paused: set[str]


def backlog(store: Store, now: float | None = None) -> Backlog:
    """Read the backlog figures in one transaction."""
    now = time.time() if now is None else now
    d, q = t.deliveries.c, t.quarantine.c
    with store.begin() as conn:
        pending = int(conn.execute(select(func.count()).where(d.status == "pending")).scalar_one())
        oldest = conn.execute(
            select(func.min(d.next_attempt_at)).where(
                d.status == "pending", d.next_attempt_at <= now
            )
        ).scalar()
        dead = int(conn.execute(select(func.count()).where(d.status == "dead")).scalar_one())
        open_q: dict[tuple[str, str], int] = {
            (pipeline, stage): int(n)
            for pipeline, stage, n in conn.execute(
                select(q.pipeline, q.stage, func.count())
                .where(q.status == "open")
                .group_by(q.pipeline, q.stage)
            )
        }
        relay = int(
            conn.execute(
                select(func.count()).select_from(t.stage_relay).where(unpublished())
            ).scalar_one()
        )
        leases: dict[str, str | None] = {}
        for pipeline, owner, until in conn.execute(
            select(t.schedules.c.pipeline, t.schedules.c.lease_owner, t.schedules.c.lease_until)
        ):
            leases[pipeline] = owner if until is not None and until > now else None
        paused = {
            p
            for (p,) in conn.execute(
                select(t.pipeline_state.c.pipeline).where(t.pipeline_state.c.paused.is_(True))
            )
        }
    return Backlog(
        pending_deliveries=pending,
        oldest_due_s=None if oldest is None else max(0.0, now - float(oldest)),
        dead_deliveries=dead,
        open_quarantine=open_q,
        unpublished_relay=relay,
        leases=leases,
        paused=paused,
    )


def as_dict(b: Backlog) -> dict[str, Any]:
    """JSON-friendly backlog."""
    return {
        "pending_deliveries": b.pending_deliveries,
        "oldest_due_s": b.oldest_due_s,
        "dead_deliveries": b.dead_deliveries,
        "open_quarantine": [
            {"pipeline": p, "stage": s, "open": n}
            for (p, s), n in sorted(b.open_quarantine.items())
        ],
        "unpublished_relay": b.unpublished_relay,
        "leases": b.leases,
        "paused": sorted(b.paused),
    }
