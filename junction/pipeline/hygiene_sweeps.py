"""Periodic alert-hygiene sweeps: digests, escalations, acknowledgements, send-log pruning.

The delivery worker calls each sweep with the current time, at most once a second, in a thread
(``sweeps(store, routes)``); each returns how many things it did.

* **Digests.**  Deliveries of a route with ``digest`` are written ``held``.  Once the oldest held
  one of a (pipeline, route, channel) is ``digest.window_s`` old, or ``digest.max_items`` wait,
  ONE transaction writes a digest delivery (``digest:<pipeline>:<route>:<channel>:<hash of the
  first item's id>``, payload ``{"type": "digest", ..., "items": [events]}``) and marks the
  items ``digested`` with ``group_id`` = the digest's id.  The id is deterministic, so two
  sweepers racing over the same items write one digest.
* **Escalations.**  A delivered alert of a route with ``escalate`` gets ``escalate_at`` (the
  hygiene gate sets it).  When that passes without an acknowledgement anywhere in its chain,
  ``<root id>:esc<n>`` goes to ``escalate.to[n-1]`` (``group_id`` = the root, the same event
  with ``escalated_from``), and that delivery escalates in turn when it is delivered.

With tracing on (ADR-0022), a digest written is a ``junction.digest`` span (a trace of its own,
linked to the traces of its items' records), and an escalation a ``junction.escalate`` span,
child of its record's batch span; a sweep that finds nothing due makes no span.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.core import tracing
from junction.pipeline import trace_links
from junction.pipeline.config import PipelineConfig
from junction.pipeline.hygiene import (
    DIGEST_PREFIX,
    RouteRules,
    RouteTable,
    escalation_step,
    event_of,
    prune_send_log,
)
from junction.store import tables as t
from junction.store.repo import Store

_ESCALATE_BATCH = 200
Sweep = Callable[[float], int]


def digest_id(pipeline: str, route: str, channel: str, first_id: str) -> str:
    """The deterministic id of the digest whose first item is ``first_id`` (no dots)."""
    h = hashlib.sha256(first_id.encode()).hexdigest()[:16]
    return f"{DIGEST_PREFIX}{pipeline}:{route}:{channel}:{h}".replace(".", "_")


def _insert_delivery(store: Store, conn: Connection, row: dict[str, Any]) -> bool:
    sealed = store.sealed_delivery(conn, row)  # the payload sealed (encryption at rest)
    if sealed is None:  # the record's subject was erased
        return False
    insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
    stmt = insert(t.deliveries).values(**sealed).on_conflict_do_nothing()
    return bool(conn.execute(stmt).rowcount)


class HygieneSweeps:
    """The digest and escalation sweeps over one store."""

    def __init__(self, store: Store, routes: RouteTable) -> None:
        """Sweep ``store``'s outbox with the routes' settings."""
        self.store = store
        self.routes = routes
        windows = [
            w
            for r in routes.of(lambda r: True)
            for w in (
                r.dedupe.window_s if r.dedupe else 0.0,
                r.throttle.per_s if r.throttle else 0.0,
            )
        ]
        self._keep_s = max(windows, default=0.0)
        self._pruned_at = 0.0

    def all(self) -> list[Sweep]:
        """Every sweep, for ``DeliveryWorker(sweeps=...)``."""
        return [self.flush_digests, self.escalate_due, self.prune]

    def flush_digests(self, now: float) -> int:
        """Turn due held deliveries into digests; return how many digests were written."""
        c = t.deliveries.c
        with self.store.begin() as conn:
            groups = conn.execute(
                select(c.pipeline, c.route, c.channel, func.count(), func.min(c.created_at))
                .where(c.status == "held")
                .group_by(c.pipeline, c.route, c.channel)
            ).all()
        made = 0
        for pipeline, route, channel, count, oldest in groups:
            rules = self.routes.get(pipeline, route)
            if rules is None or rules.digest is None:
                self._release(pipeline, route, channel, now)
                continue
            window, most = rules.digest.window_s, rules.digest.max_items
            while count >= most or (count > 0 and oldest <= now - window):
                with tracing.span("junction.digest", _attrs(rules.pipeline, channel)) as sp:
                    taken, oldest = self._flush_one(rules, channel, now, sp)
                if not taken:
                    break
                made += 1
                count -= taken
        return made

    def _flush_one(
        self, rules: RouteRules, channel: str, now: float, sp: Any = tracing.NO_SPAN
    ) -> tuple[int, float]:
        """Write one digest of up to ``max_items`` held items; (items taken, next oldest).

        ``sp`` (the digest's span, with tracing on) gets the item count and a link to the trace
        of each item's record.
        """
        assert rules.digest is not None
        c = t.deliveries.c
        q = (
            select(c.id, c.record_id, c.event_type, c.payload, c.created_at)
            .where(
                c.status == "held",
                c.pipeline == rules.pipeline,
                c.route == rules.route,
                c.channel == channel,
            )
            .order_by(c.created_at, c.id)
            .limit(rules.digest.max_items + 1)
        )
        if self.store.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self.store.begin() as conn:
            # payloads opened (encryption at rest); the digest is sealed again on insert
            rows = [
                SimpleNamespace(**r)
                for r in self.store.open_delivery_rows(conn, conn.execute(q).mappings().all())
            ]
            items = rows[: rules.digest.max_items]
            if not items:
                return 0, now
            did = digest_id(rules.pipeline, rules.route, channel, items[0].id)
            entity = str(event_of(items[0].payload).get("entity") or "alert")
            payload = (
                '{"type":"digest","pipeline":'
                + orjson.dumps(rules.pipeline).decode()
                + ',"route":'
                + orjson.dumps(rules.route).decode()
                + ',"channel":'
                + orjson.dumps(channel).decode()
                + f',"count":{len(items)},"items":['
                + ",".join(r.payload for r in items)
                + "]}"
            )
            _insert_delivery(
                self.store,
                conn,
                {
                    "id": did,
                    "record_id": did[:512],
                    "pipeline": rules.pipeline,
                    "channel": channel,
                    "event_type": f"{entity}.digest"[:64],
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "route": rules.route,
                },
            )
            conn.execute(
                update(t.deliveries)
                .where(c.id.in_([r.id for r in items]), c.status == "held")
                .values(status="digested", group_id=did)
            )
        if tracing.enabled():
            sp.set("junction.items", len(items))
            linked = trace_links.parents(self.store, [r.record_id for r in items])
            for parent in sorted(set(linked.values())):  # one link per batch span
                sp.link(parent)
        rest = rows[len(items) :]
        return len(items), float(rest[0].created_at) if rest else now

    def _release(self, pipeline: str, route: str | None, channel: str, now: float) -> None:
        # a route that no longer digests (config changed): its held deliveries go out one by one
        c = t.deliveries.c
        route_is = c.route.is_(None) if route is None else c.route == route
        with self.store.begin() as conn:
            conn.execute(
                update(t.deliveries)
                .where(c.status == "held", c.pipeline == pipeline, c.channel == channel, route_is)
                .values(status="pending", next_attempt_at=now)
            )

    def escalate_due(self, now: float) -> int:
        """Escalate unacknowledged alerts whose time has come; return how many escalated."""
        c = t.deliveries.c
        with self.store.begin() as conn:
            found = (
                conn.execute(
                    select(
                        c.id,
                        c.record_id,
                        c.pipeline,
                        c.route,
                        c.event_type,
                        c.payload,
                        c.group_id,
                    )
                    .where(c.escalate_at.is_not(None), c.escalate_at <= now, c.ack_at.is_(None))
                    .order_by(c.escalate_at)
                    .limit(_ESCALATE_BATCH)
                )
                .mappings()
                .all()
            )
            # payloads opened (encryption at rest)
            due = [SimpleNamespace(**r) for r in self.store.open_delivery_rows(conn, found)]
        made = 0
        if not tracing.enabled():
            for row in due:
                made += self._escalate(row, now)
            return made
        # each escalation continues its record's trace (one lookup for the sweep's rows)
        parents = trace_links.parents(self.store, [r.record_id for r in due])
        for row in due:
            step = escalation_step(row.id)
            rules = self.routes.get(row.pipeline, row.route)
            targets = rules.escalate.to if rules is not None and rules.escalate else []
            attrs = _attrs(row.pipeline, targets[step] if step < len(targets) else None)
            attrs["junction.step"] = step + 1
            with tracing.span("junction.escalate", attrs, parent=parents.get(row.record_id)) as sp:
                written = self._escalate(row, now)
                sp.set("junction.escalated", written)
            made += written
        return made

    def _escalate(self, row: Any, now: float) -> int:
        c = t.deliveries.c
        rules = self.routes.get(row.pipeline, row.route)
        step = escalation_step(row.id)
        root = row.group_id if step and row.group_id else row.id
        with self.store.begin() as conn:
            # the mark goes first: of two racing sweepers only one escalates
            claimed = conn.execute(
                update(t.deliveries)
                .where(c.id == row.id, c.escalate_at.is_not(None), c.ack_at.is_(None))
                .values(escalate_at=None)
            ).rowcount
            if not claimed or rules is None or rules.escalate is None:
                return 0
            targets = rules.escalate.to
            if step >= len(targets):
                return 0
            acked = conn.execute(
                select(c.id)
                .where(or_(c.id == root, c.group_id == root), c.ack_at.is_not(None))
                .limit(1)
            ).first()
            if acked is not None:
                return 0
            event = event_of(row.payload)
            event["escalated_from"] = row.id
            written = _insert_delivery(
                self.store,
                conn,
                {
                    "id": f"{root}:esc{step + 1}",
                    "record_id": row.record_id,
                    "pipeline": row.pipeline,
                    "channel": targets[step],
                    "event_type": row.event_type,
                    "payload": orjson.dumps(event).decode(),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "route": row.route,
                    "group_id": root,
                },
            )
        return int(written)

    def prune(self, now: float) -> int:
        """Drop send-log rows older than every window (at most once a minute)."""
        if now - self._pruned_at < 60:
            return 0
        self._pruned_at = now
        return prune_send_log(self.store, now - self._keep_s - 60)


def hygiene_sweeps(store: Store, pipelines: Mapping[str, PipelineConfig]) -> list[Sweep]:
    """The delivery worker's alert-hygiene sweeps for ``pipelines`` (digests, escalations)."""
    return HygieneSweeps(store, RouteTable(pipelines)).all()


def acknowledge(
    store: Store,
    delivery_id: str,
    now: float | None = None,
    *,
    audit: Callable[[Connection], None] | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """Acknowledge an alert: its escalation chain stops.

    Returns the delivery (id, status, ``ack_at``, ``group_id``), None if there is no such
    delivery, and whether this call acknowledged it (False: it was acknowledged before).
    ``audit`` writes the acknowledgement's audit entry in the same transaction.
    """
    now = time.time() if now is None else now
    c = t.deliveries.c
    with store.begin() as conn:
        n = conn.execute(
            update(t.deliveries)
            .where(c.id == delivery_id, c.ack_at.is_(None))
            .values(ack_at=now, escalate_at=None)
        ).rowcount
        if n and audit is not None:
            audit(conn)
        row = conn.execute(
            select(c.id, c.status, c.ack_at, c.group_id).where(c.id == delivery_id)
        ).first()
    return (None if row is None else dict(row._mapping)), bool(n)


__all__ = ["HygieneSweeps", "Sweep", "acknowledge", "digest_id", "hygiene_sweeps"]


def _attrs(pipeline: str, channel: str | None) -> dict[str, tracing.AttrValue]:
    """A sweep span's names (the pipeline's, the channel's): never a payload value."""
    if not tracing.enabled():
        return {}
    attrs: dict[str, tracing.AttrValue] = {"junction.pipeline": pipeline}
    if channel is not None:
        attrs["junction.channel"] = channel
    return attrs
