"""The delivery worker: sends outbox rows through their channels with the one retry policy.

At-least-once with a stable idempotency key: a delivery is marked delivered only after the
receiver's 2xx, so a crash in between re-sends the same ``webhook-id`` and the receiver dedupes.
Each channel (endpoint) has its own cap on sends in flight, so a slow endpoint never delays the
others; outcomes are recorded in small batches (``junction.pipeline.outcomes`` says what each
result does to the row).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from junction.core import metrics, tracing
from junction.core.errors import (
    ConfigError,
    InternalError,
    JunctionError,
    RecipientRejectedError,
    RetryableError,
)
from junction.core.logging import get_logger
from junction.core.registry import Registry, default_registry
from junction.pipeline import outcomes, trace_links
from junction.pipeline.config import DeliveryConfig, EgressConfig, Route
from junction.pipeline.gates import Decision, SendGate
from junction.pipeline.hygiene import is_digest
from junction.pipeline.outcomes import Outcome
from junction.pipeline.suppression_gate import SuppressionGate
from junction.store.events import AlertPolicy
from junction.store.outbox import HealthPolicy
from junction.store.repo import Row, Store
from outbound.base import Delivery, OutboundChannel, Receipt
from outbound.egress import EgressPolicy
from outbound.signing_keys import SigningKeySource

log = get_logger(__name__)
# a gateway's "upstream overloaded" answers: the channel's cap is halved (RELIABILITY case 7)
THROTTLING_STATUSES = frozenset({502, 504})


@dataclass
class DeliveryStats:
    """What one worker run did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    suppressed: int = 0
    skipped: int = 0
    held: int = 0
    disabled_channels: set[str] = field(default_factory=set)


def build_channels(
    channels: Mapping[str, Mapping[str, Any]],
    registry: Registry = default_registry,
    *,
    egress: EgressConfig | None = None,
    signing_keys: SigningKeySource | None = None,
) -> dict[str, OutboundChannel]:
    """Instantiate every configured channel from the registry (kind = the name's prefix).

    Channels that send to user-configured URLs declare ``uses_egress = True`` and receive one
    shared ``EgressPolicy``: ``egress.allow_networks`` plus ``JUNCTION_EGRESS_ALLOW``
    (``outbound.egress`` describes the contract).  Channels that sign declare
    ``uses_signing_keys = True`` and receive ``signing_keys``, the secrets rotated through the
    store (``junction.store.channel_secrets.StoreSigningKeys``, ADR-0023).
    """
    policy = EgressPolicy.from_env(egress.allow_networks if egress is not None else ())
    out: dict[str, OutboundChannel] = {}
    for name, options in channels.items():
        kind = name.split(".", 1)[0]
        cls = registry.get("channels", kind)
        # max_in_flight is the worker's per-channel cap, not the channel's own option
        opts = {k: v for k, v in options.items() if k not in ("type", "max_in_flight")}
        try:
            config = cls.config_model.model_validate(opts)
            kwargs: dict[str, Any] = {}
            if getattr(cls, "uses_egress", False):
                kwargs["egress"] = policy
            if signing_keys is not None and getattr(cls, "uses_signing_keys", False):
                kwargs["signing_keys"] = signing_keys
            out[name] = cls(config, **kwargs)
        except ValueError as exc:
            raise ConfigError(f"channel {name!r} is misconfigured", details=str(exc)) from exc
    return out


class DeliveryWorker:
    """Sends due deliveries through per-channel queues and records outcomes in small batches.

    Three parts run on one event loop:

    * the dispatcher leases due rows fairly per channel (each channel at most its free slots:
      ``max_in_flight`` of its config, else ``per_endpoint_concurrency``; all channels together
      at most ``concurrency``) and starts one task per send, so a slow endpoint only ever holds
      its own slots;
    * sends (after the send gates, decided in a worker thread per claimed batch) run as
      independent tasks; each outcome goes to the recorder's queue;
    * the recorder writes whatever outcomes have queued up in one transaction
      (``Store.record_attempts``: attempts, states, endpoint health, events and alerts), so the
      store is hit once per batch, and a slow send never holds back the recording of fast ones.

    A delivery's row changes only when its outcome is recorded; its lease (``lease_s``) covers
    the send.  A crash in between re-sends the same ``webhook-id`` after the lease, and the
    receiver dedupes it (at-least-once).

    Args:
        store: The store (or a ``TrackedOutbox``).
        channels: Channel instances by configured name.
        policy: Retry schedule, concurrency caps, lease and auto-disable window.
        gates: Send gates, asked in order before each send they apply to.
        routes: pipeline → route key → Route, for each delivery's template.
        sweeps: Periodic jobs (digest flush, escalation), called at most once a second in a
            thread with the current time; each returns how many deliveries it queued.
        alerts: Where ``endpoint.disabled`` and ``message.attempt.exhausted`` alerts go.
        limits: Per-channel in-flight caps (``max_in_flight`` of a channel's config); a channel
            without one uses its own ``max_in_flight`` attribute (a batching channel wants a
            full batch in flight), else ``per_endpoint_concurrency``.
    """

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, OutboundChannel],
        policy: DeliveryConfig,
        *,
        gates: Sequence[SendGate] = (),
        routes: Mapping[str, Mapping[str, Route]] | None = None,
        sweeps: Sequence[Callable[[float], int]] = (),
        alerts: AlertPolicy | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.policy = policy
        self.gates = list(gates)
        self.routes = routes or {}
        self.sweeps = list(sweeps)
        self.health = HealthPolicy(policy.disable_after_s, alerts)
        self._caps = {
            name: max(1, int((limits or {}).get(name, _preferred_cap(ch, policy))))
            for name, ch in self.channels.items()
        }
        # 502/504 halve a channel's cap (down to 1), each delivered send adds one back, up to
        # its configured cap: a gateway that says its upstream is overloaded gets less load
        self._ceilings = dict(self._caps)
        self._suppressor = next((g for g in self.gates if isinstance(g, SuppressionGate)), None)
        self._series: dict[str, tuple[Any, Any]] = {}
        self.stats = DeliveryStats()
        self._reset()

    def _reset(self) -> None:
        self._inflight: dict[str, int] = dict.fromkeys(self.channels, 0)
        self._total = 0  # sends (and gate decisions) in flight
        # claimed rows waiting for a slot of their channel: up to one cap's worth each, so a
        # freed slot starts the next send at once, without a trip to the store
        self._buffer: dict[str, deque[_Ready]] = {ch: deque() for ch in self.channels}
        self._buffered = 0
        self._held: set[str] = set()
        # ids recorded (and so let go of) since the dispatcher's current claim began, with the
        # recording's number: a claim that ran alongside may hold a stale "pending" copy
        self._just_recorded: dict[str, int] = {}
        self._recordings = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._hungry: set[str] = set()
        self._sleep_until = 0.0
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(
            maxsize=max(64, 4 * self.policy.concurrency)
        )
        self._recorder: asyncio.Task[None] | None = None
        # delivery id → its record's traceparent, while tracing is on (ADR-0022)
        self._parents: dict[str, str] = {}
        # digest id → the traceparents of its items' records (its span links) and its item count
        self._links: dict[str, tuple[list[str], int]] = {}

    async def run(
        self, *, stop: asyncio.Event | None = None, drain_wait_s: float | None = None
    ) -> DeliveryStats:
        """Deliver until ``stop`` is set, or (with ``drain_wait_s``) until nothing is due soon.

        Sends in flight when it stops are finished and recorded first.
        """
        self._reset()
        self._recorder = asyncio.create_task(self._record_loop(), name="delivery-recorder")
        helpers = []
        if stop is not None:
            helpers.append(asyncio.create_task(self._watch(stop)))
        if self.sweeps:
            helpers.append(asyncio.create_task(self._sweep_loop(), name="delivery-sweeps"))
        try:
            failure: JunctionError | None = None
            try:
                await self._dispatch(stop, drain_wait_s)
            except JunctionError as exc:
                failure = exc  # e.g. the store is down: still record what is in flight
            self._drop_buffers()
            await self._finish_sends()
            await self._queue.put(None)
            await self._recorder
            if failure is not None:
                raise failure
        finally:
            for task in [*helpers, *self._tasks]:
                task.cancel()
            if not self._recorder.done():
                self._recorder.cancel()
            await asyncio.gather(*helpers, *self._tasks, self._recorder, return_exceptions=True)
        return self.stats

    async def aclose(self) -> None:
        """Close every channel."""
        for ch in self.channels.values():
            await ch.aclose()

    async def _finish_sends(self) -> None:
        """Wait for the sends in flight (the recorder stopping with an error ends the wait)."""
        assert self._recorder is not None
        while self._tasks:
            await asyncio.wait([*self._tasks, self._recorder], return_when=asyncio.FIRST_COMPLETED)
            self._check_recorder()

    async def _recorded(self) -> None:
        """Wait until every queued outcome is recorded (or the recorder fails)."""
        assert self._recorder is not None
        joined = asyncio.create_task(self._queue.join())
        try:
            await asyncio.wait([joined, self._recorder], return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        self._check_recorder()

    # the dispatcher

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def _wants(self) -> dict[str, int]:
        """Rows worth claiming per channel: up to twice its cap in flight and buffered."""
        return {
            ch: want
            for ch, cap in self._caps.items()
            if (want := 2 * cap - self._inflight[ch] - len(self._buffer[ch])) > 0
        }

    async def _dispatch(self, stop: asyncio.Event | None, drain_wait_s: float | None) -> None:
        conc = self.policy.concurrency
        while stop is None or not stop.is_set():
            self._check_recorder()
            wants = self._wants()
            room = 2 * conc - self._total - self._buffered
            if not wants or room <= 0:  # every buffer is full: draining ones wake us
                if drain_wait_s is not None and not self._caps:
                    break  # no channel at all: nothing can ever fall due
                self._hungry = set(self._caps)
                await self._sleep(1.0)
                continue
            self._wake.clear()
            began = self._recordings
            rows = await asyncio.to_thread(
                self.store.claim_deliveries, room, self.policy.lease_s, slots=wants
            )
            # not sent from this claim: a row still held (its outcome not recorded yet), and a
            # row recorded while the claim ran (the claim may have read it still pending: its
            # outcome, even "delivered", was committed after).  Decided before any await, then
            # their leases are given back, or they would wait out the whole lease
            stale = {d for d, n in self._just_recorded.items() if n > began}
            self._just_recorded.clear()
            taken = [r for r in rows if r["id"] in self._held or r["id"] in stale]
            if taken:
                skip = {r["id"] for r in taken}
                rows = [r for r in rows if r["id"] not in skip]
                # in id order (one lock order with other writers); best effort: a release the
                # store refuses (a deadlock, an outage) only leaves the lease to run out
                leases = sorted((r["id"], r["lease_until"]) for r in taken)
                try:
                    await asyncio.to_thread(self.store.release_claims, leases)
                except RetryableError as exc:
                    log.warning("could not give claimed leases back", error=type(exc).__name__)
            if rows and tracing.enabled():
                await self._link_traces(rows)
            got = Counter(r["channel"] for r in rows)
            if len(rows) >= room:
                filled = set(self._caps)
            else:
                filled = {ch for ch, n in wants.items() if got[ch] >= n}
            # channels that got all they asked for probably have more due; channels that were
            # not asked may have a backlog: their buffers running low is worth a claim
            self._hungry = filled | (set(self._caps) - set(wants))
            self._admit(rows)
            if stop is not None and stop.is_set():
                break
            if filled:
                await self._sleep(1.0)
                continue
            # nothing more is due for the channels with room: wait for a due time or a wake
            if drain_wait_s is not None and self._total == 0 and self._buffered == 0:
                await self._recorded()  # retries are recorded before the next due time is read
                if self._total == 0 and self._buffered == 0:
                    next_due = await asyncio.to_thread(self.store.next_due_at, list(self._caps))
                    now = time.time()
                    if next_due is None or next_due - now > drain_wait_s:
                        break
                    if next_due > now:
                        await self._sleep(min(1.0, next_due - now))
                    continue
            open_ = list(self._wants())
            next_due = None
            if open_:
                next_due = await asyncio.to_thread(self.store.next_due_at, open_)
            wait = 1.0 if next_due is None else min(1.0, max(0.005, next_due - time.time()))
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        self._sleep_until = time.time() + seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._sleep_until = 0.0

    def _check_recorder(self) -> None:
        rec = self._recorder
        if rec is not None and rec.done():
            exc = rec.exception()
            if exc is not None:
                raise exc
            raise InternalError("the delivery recorder stopped")

    async def _link_traces(self, rows: list[dict[str, Any]]) -> None:
        """Find the trace each claimed row's record was stored under (one query).

        A digest has no record of its own: its send is a trace of its own, linked to the traces
        of its items' records (found by the items' ``group_id``, one more query per digest).
        """
        parents, links = await asyncio.to_thread(trace_links.of_claimed, self.store, rows)
        self._parents.update(parents)
        self._links.update(links)

    def _forget_trace(self, delivery_id: str) -> None:
        """A claimed row that will not be sent from this claim: its trace lookups go."""
        if self._parents:
            self._parents.pop(delivery_id, None)
        if self._links:
            self._links.pop(delivery_id, None)

    def _admit(self, rows: list[dict[str, Any]]) -> None:
        """Buffer claimed rows (after their gates, decided in one thread hop) and start sends."""
        gated: list[_Ready] = []
        reported: list[dict[str, Any]] = []
        for row in rows:
            self._held.add(row["id"])
            channel = self.channels[row["channel"]]
            if row.get("remote_status") is not None and getattr(channel, "reported_sends", False):
                reported.append(row)  # sent before, by an attempt never recorded: not again
                continue
            delivery = self._delivery(row)
            applies = [g for g in self.gates if g.applies(delivery, channel)]
            ready = _Ready(row, delivery, channel, applies)
            if applies:
                gated.append(ready)
            else:
                self._buffer[row["channel"]].append(ready)
                self._buffered += 1
        if gated:
            self._total += len(gated)
            self._spawn(self._gate(gated))
        if reported:
            self._total += len(reported)
            self._spawn(self._confirm(reported))
        self._pump_all()

    def _pump(self, name: str) -> None:
        """Start buffered sends of channel ``name`` while it and the worker have free slots."""
        buf = self._buffer[name]
        cap = self._caps[name]
        conc = self.policy.concurrency
        margin = self.policy.lease_s / 2
        while buf and self._inflight[name] < cap and self._total < conc:
            ready = buf.popleft()
            self._buffered -= 1
            if time.time() > ready.row["lease_until"] - margin:
                # it waited too long for a slot: leave it to a later claim once its lease ends
                self._held.discard(ready.row["id"])
                self._forget_trace(ready.row["id"])
                continue
            self._inflight[name] += 1
            self._total += 1
            self._spawn(self._send(ready.row, ready.delivery, ready.channel, ready.gates))

    def _pump_all(self) -> None:
        for name, buf in self._buffer.items():
            if self._total >= self.policy.concurrency:
                return
            if buf:
                self._pump(name)

    def _drop_buffers(self) -> None:
        """Forget rows not started (they stay leased until their lease ends, then due again)."""
        for buf in self._buffer.values():
            for ready in buf:
                self._held.discard(ready.row["id"])
                self._forget_trace(ready.row["id"])
            buf.clear()
        self._buffered = 0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delivery(self, row: dict[str, Any]) -> Delivery:
        route = row.get("route")
        template = None
        reveal_pii = False
        if route is not None:
            spec = self.routes.get(row["pipeline"], {}).get(route)
            if spec is not None:
                reveal_pii = spec.reveal_pii
                # a digest renders with its route's digest template, not the per-alert one
                if is_digest(row["id"]):
                    template = spec.digest.template if spec.digest is not None else None
                else:
                    template = spec.template
        return Delivery(
            delivery_id=row["id"],
            channel=row["channel"],
            event_type=row["event_type"],
            payload=row["payload"].encode(),
            attempt=int(row["attempts"]) + 1,
            route=route,
            template=template,
            reveal_pii=reveal_pii,
        )

    def _release(self, row: dict[str, Any], *, recorded_later: bool) -> None:
        """A send finished: start the next buffered one; ask for more when a buffer runs low.

        A delivery whose outcome waits for the recorder stays held until it is recorded: its
        lease may run out meanwhile (a slow send), and a claim must not take it up again while
        the store still says pending (it would be sent twice).
        """
        name = row["channel"]
        self._inflight[name] -= 1
        self._total -= 1
        if not recorded_later:
            self._held.discard(row["id"])
        if self._buffer[name]:
            self._pump(name)
        elif self._buffered:
            self._pump_all()
        if (name in self._hungry and len(self._buffer[name]) <= self._caps[name] // 2) or (
            self._total == 0 and self._buffered == 0
        ):
            self._wake.set()

    # sends and gates

    async def _send(
        self,
        row: dict[str, Any],
        delivery: Delivery,
        channel: OutboundChannel,
        gates: Sequence[SendGate],
    ) -> None:
        queued = False
        try:
            started = time.time()
            quarantined = None
            note: _Note | None = None
            parent = self._parents.pop(row["id"], None) if self._parents else None
            links = self._links.pop(row["id"], None) if self._links else None
            try:
                if parent is None and links is None:
                    receipt = await channel.send(delivery)
                else:
                    receipt = await self._traced_send(channel, delivery, parent, links)
            except JunctionError as exc:
                outcome, quarantined = outcomes.failed(row, exc, self.policy, started)
                if isinstance(exc, RecipientRejectedError):
                    note = _Note(rejected=exc)
            except Exception as exc:  # noqa: BLE001 - a channel bug must not stop the others
                log.error("channel raised an unexpected error", channel=row["channel"])
                err = InternalError("the channel failed unexpectedly", details=type(exc).__name__)
                outcome, quarantined = outcomes.failed(row, err, self.policy, started)
            else:
                outcome = outcomes.succeeded(row, receipt, started)
                if gates:
                    note = _Note(delivered=(gates, delivery, channel, receipt))
            self._adapt(row["channel"], outcome)
            self._count(row, outcome, quarantined)
            await self._queue.put(_Item(outcome, quarantined, note))
            queued = True
        finally:
            self._release(row, recorded_later=queued)

    def _adapt(self, name: str, outcome: Outcome) -> None:
        """Throttle a channel whose gateway is overloaded (502, 504); recover on deliveries."""
        cap = self._caps[name]
        if outcome.get("status_code") in THROTTLING_STATUSES:
            if cap > 1:
                self._caps[name] = cap // 2
                log.warning("channel throttled", channel=name, cap=cap // 2)
        elif outcome["outcome"] == "delivered" and cap < self._ceilings[name]:
            self._caps[name] = cap + 1

    async def _traced_send(
        self,
        channel: OutboundChannel,
        delivery: Delivery,
        parent: str | None,
        links: tuple[list[str], int] | None = None,
    ) -> Receipt:
        """Send under a ``junction.deliver`` span, carrying its header: a child of the record's
        batch span (``parent``), or for a digest (``links``) a trace of its own linked to its
        items' batch spans."""
        attrs: dict[str, tracing.AttrValue] = {
            "junction.channel": delivery.channel,
            "junction.attempt": delivery.attempt,
        }
        if links is not None:
            attrs["junction.items"] = links[1]
        with tracing.span("junction.deliver", attrs, parent=parent) as sp:
            for link in links[0] if links is not None else ():
                sp.link(link)
            header = sp.traceparent
            if header is not None:
                delivery = replace(delivery, headers={**delivery.headers, "traceparent": header})
            receipt = await channel.send(delivery)
            if receipt.status_code is not None:
                sp.set("http.response.status_code", receipt.status_code)
            return receipt

    async def _gate(self, items: list[_Ready]) -> None:
        """Decide the gates of a claimed batch in one thread hop; buffer what may be sent."""
        passed = 0
        try:
            now = time.time()
            decisions = await asyncio.to_thread(_decide_all, items, now)
            for ready, decision in zip(items, decisions, strict=True):
                row = ready.row
                if isinstance(decision, JunctionError):
                    self._forget_trace(row["id"])
                    outcome, quarantined = outcomes.failed(row, decision, self.policy, now)
                    self._count(row, outcome, quarantined)
                    await self._queue.put(_Item(outcome, quarantined, None))  # held till recorded
                elif decision is None or decision.action == "send":
                    if decision is not None and decision.exclude:
                        ready = replace(
                            ready, delivery=replace(ready.delivery, exclude=decision.exclude)
                        )
                    self._buffer[row["channel"]].append(ready)
                    self._buffered += 1
                    passed += 1
                else:
                    self._forget_trace(row["id"])
                    outcome = outcomes.gated(row, decision, now)
                    self._count(row, outcome, None)
                    await self._queue.put(_Item(outcome, None, None))  # held till recorded
        finally:
            self._total -= len(items)
            if passed:
                self._pump_all()
            if self._total == 0 and self._buffered == 0:
                self._wake.set()

    async def _confirm(self, rows: list[dict[str, Any]]) -> None:
        """Record as delivered what the provider already reported (RELIABILITY case 59)."""
        try:
            now = time.time()
            for row in rows:
                self._forget_trace(row["id"])
                outcome = outcomes.reported(row, now)
                self._count(row, outcome, None)
                log.info(
                    "the provider reported an unrecorded send; not sending it again",
                    channel=row["channel"],
                    remote_status=row["remote_status"],
                )
                await self._queue.put(_Item(outcome, None, None))  # held till recorded
        finally:
            self._total -= len(rows)
            if self._total == 0 and self._buffered == 0:
                self._wake.set()

    def _count(self, row: dict[str, Any], outcome: Outcome, quarantined: Row | None) -> None:
        kind = outcome["outcome"]
        s = self.stats
        if kind == "delivered":
            s.delivered += 1
        elif kind in ("retry", "gone"):
            s.retried += 1
        elif kind == "deferred":
            s.deferred += 1
        elif kind == "suppressed":
            s.suppressed += 1
        elif kind == "skipped":
            s.skipped += 1
        elif kind == "held":
            s.held += 1
        if outcome["new_status"] == "dead":
            s.dead += 1
            log.warning(
                "delivery dead-lettered",
                delivery_id=row["id"],
                channel=row["channel"],
                error=(outcome["error"] or "").split(":", 1)[0],
                attempts=outcome["attempt_no"],
            )
        if kind == "delivered":
            # the hot path: the labelled series are looked up once per channel
            series = self._series.get(row["channel"])
            if series is None:
                series = self._series[row["channel"]] = (
                    metrics.DELIVERIES.labels(row["channel"], "delivered"),
                    metrics.DELIVERY_SECONDS.labels(row["channel"]),
                )
            series[0].inc()
            series[1].observe(outcome["duration_ms"] / 1000)
        elif outcome.get("attempt", True) and kind in ("retry", "failed", "gone"):
            metrics.observe_delivery(
                row["pipeline"],
                row["channel"],
                kind,
                outcome["duration_ms"] / 1000,
                quarantined[4] if quarantined is not None else None,
            )

    # the recorder

    async def _record_loop(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            batch: list[_Item] = []
            taken = 1
            if first is None:
                closing = True
            else:
                batch.append(first)
                if self._queue.qsize() < RECORD_BATCH // 8 and self._total:
                    # more outcomes are on their way: a moment's wait makes a fuller batch
                    await asyncio.sleep(RECORD_LINGER_S)
            while not closing and len(batch) < RECORD_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                taken += 1
                if item is None:
                    closing = True
                else:
                    batch.append(item)
            try:
                if batch:
                    await self._record(batch)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _record(self, batch: list[_Item]) -> None:
        delay = 0.2
        for attempt in range(RECORD_TRIES):
            try:
                # a retry rechecks: the failed try may have committed all the same
                disabled = await asyncio.to_thread(self._record_sync, batch, attempt > 0)
                break
            except RetryableError:
                if attempt == RECORD_TRIES - 1:
                    raise
                log.warning("recording delivery outcomes failed, retrying", size=len(batch))
                await asyncio.sleep(delay)
                delay *= 2
        self.stats.disabled_channels |= disabled
        self._recordings += 1
        for item in batch:  # recorded: a later claim may take these up again (retries)
            self._held.discard(item.outcome["delivery_id"])
            self._just_recorded[item.outcome["delivery_id"]] = self._recordings
        if self._sleep_until:
            soonest = min(
                (
                    i.outcome["next_attempt_at"]
                    for i in batch
                    if i.outcome["new_status"] == "pending"
                ),
                default=None,
            )
            if soonest is not None and soonest < self._sleep_until:
                self._wake.set()

    def _record_sync(self, batch: list[_Item], recheck: bool = False) -> set[str]:
        for item in batch:
            rejected = item.note.rejected if item.note is not None else None
            if rejected is not None:
                if self._suppressor is not None:
                    self._suppressor.suppress(rejected, source=item.outcome["channel"])
                else:
                    log.warning("recipient rejected; no suppression list configured")
        disabled = self.store.record_attempts(
            [i.outcome for i in batch],
            [i.quarantined for i in batch if i.quarantined is not None],
            health=self.health,
            recheck=recheck,
        )
        now = time.time()
        for item in batch:
            sent = item.note.delivered if item.note is not None else None
            if sent is None:
                continue
            gates, delivery, channel, receipt = sent
            for gate in gates:
                try:
                    gate.delivered(delivery, channel, receipt, now)
                except JunctionError as exc:
                    log.warning("send gate failed to note a delivery", error=exc.code)
        return disabled

    # periodic sweeps

    async def _sweep_loop(self) -> None:
        while True:
            started = time.monotonic()
            queued = await asyncio.to_thread(self._sweep_sync, time.time())
            if queued:
                self._wake.set()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def _sweep_sync(self, now: float) -> int:
        queued = 0
        for sweep in self.sweeps:
            try:
                queued += sweep(now)
            except JunctionError as exc:
                log.warning("delivery sweep failed", error=exc.code)
        return queued


RECORD_BATCH = 500  # outcomes per recording transaction at most
RECORD_LINGER_S = 0.01  # how long the recorder waits for more outcomes when few are queued
RECORD_TRIES = 4  # a store outage longer than ~3 s stops the run (the service restarts it)


@dataclass(frozen=True, slots=True)
class _Note:
    """What the recorder does besides writing the outcome."""

    delivered: tuple[Sequence[SendGate], Delivery, OutboundChannel, Receipt] | None = None
    rejected: RecipientRejectedError | None = None


@dataclass(frozen=True, slots=True)
class _Ready:
    """A claimed delivery ready to send, with the gates that applied to it."""

    row: dict[str, Any]
    delivery: Delivery
    channel: OutboundChannel
    gates: Sequence[SendGate]


@dataclass(frozen=True, slots=True)
class _Item:
    outcome: Outcome
    quarantined: Row | None
    note: _Note | None


def _decide_all(items: Sequence[_Ready], now: float) -> list[Decision | JunctionError | None]:
    """Every gate's decision for every delivery (in a worker thread): the first non-send wins."""
    out: list[Decision | JunctionError | None] = []
    for ready in items:
        delivery, channel, gates = ready.delivery, ready.channel, ready.gates
        exclude: frozenset[str] = frozenset()
        verdict: Decision | JunctionError | None = None
        try:
            for gate in gates:
                decision = gate.decide(replace(delivery, exclude=exclude), channel, now)
                if decision is None:
                    continue
                if decision.action != "send":
                    verdict = decision
                    break
                exclude |= decision.exclude
        except JunctionError as exc:
            verdict = exc
        except Exception as exc:  # noqa: BLE001 - one gate's bug fails one delivery, not all
            verdict = InternalError("a send gate failed", details=type(exc).__name__)
        if verdict is None and exclude:
            verdict = Decision("send", exclude=exclude)
        out.append(verdict)
    return out


def _preferred_cap(channel: OutboundChannel, policy: DeliveryConfig) -> int:
    """A channel's own in-flight wish (a batching channel wants a full batch), else the policy's."""
    wish = getattr(channel, "max_in_flight", None)
    return wish if isinstance(wish, int) and wish > 0 else policy.per_endpoint_concurrency


def channel_limits(channels: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Per-channel ``max_in_flight`` caps from the channels' config (where set)."""
    return {
        name: int(opts["max_in_flight"])
        for name, opts in channels.items()
        if "max_in_flight" in opts
    }
