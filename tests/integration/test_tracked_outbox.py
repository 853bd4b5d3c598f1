"""The service's ``TrackedOutbox`` forgets a lease on every path that ends it, and gives back on
shutdown only leases that are still its own.

Found by review: an entry stayed in ``_held`` when its lease ended other than by a recorded
outcome (the worker giving a claim back, a row dropped and its lease run out, a lease taken over
by another worker), so a long-running service grew the map and tried to give back leases it no
longer held.  Real deliveries on the real store, over real HTTP where a receiver answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import text

from junction.core.errors import DeferredError, RecipientRejectedError
from junction.pipeline.config import DeliveryConfig
from junction.pipeline.gates import Decision
from junction.pipeline.suppression_gate import SuppressionGate
from junction.serve.outbox import DeliveryService, TrackedOutbox
from junction.store.outbox import HealthPolicy
from junction.store.repo import Row, Store
from junction.store.suppressions import SuppressionList
from outbound.base import Delivery, OutboundChannel, Receipt
from outbound.webhook.config import generate_secret
from tests.integration.delivery_support import (
    Behaviour,
    NotesChannel,
    Receiver,
    enqueue,
    receiver,
    run_worker,
)
from tests.integration.helpers import rows_of

NOTES = "notes.people"


@pytest.fixture
def sink() -> Iterator[Receiver]:
    with receiver(generate_secret()) as r:
        yield r


def _leases(store_url: str) -> dict[str, float | None]:
    return dict(rows_of(store_url, "SELECT id, lease_until FROM deliveries"))


def _statuses(store_url: str) -> dict[str, str]:
    return dict(rows_of(store_url, "SELECT id, status FROM deliveries"))


class _Script:
    """A gate deciding from a script per delivery id (the first decision, then sends)."""

    def __init__(self, script: dict[str, Decision]) -> None:
        self.script = dict(script)

    def applies(self, delivery: Delivery, channel: OutboundChannel) -> bool:
        return delivery.delivery_id in self.script

    def decide(self, delivery: Delivery, channel: OutboundChannel, now: float) -> Decision | None:
        return self.script.pop(delivery.delivery_id, None)

    def delivered(
        self, delivery: Delivery, channel: OutboundChannel, receipt: Receipt, now: float
    ) -> None:
        return None


def test_every_recorded_outcome_lets_its_lease_go(
    store: Store, store_url: str, sink: Receiver, suppressions: SuppressionList
) -> None:
    sink.behaviours["flaky"] = Behaviour(status=lambda n, wid: 500 if n == 0 else 200)
    sink.behaviours["bad"] = Behaviour(status=lambda n, wid: 400)
    sink.behaviours["gone"] = Behaviour(status=lambda n, wid: 410)  # disables its channel
    for name in ("ok", "flaky", "bad", "gone"):
        enqueue(store, f"webhook.{name}", [f"{name}-1"])
    suppressions.add("email", "out@example.com", reason="bounce", source="test")
    to = {"to": ["a@example.com"]}
    enqueue(store, NOTES, ["skip", "hold", "defer", "quiet", "sent"], payload=to)
    enqueue(store, NOTES, ["rejected"], payload={"to": ["stop@example.com"]})
    enqueue(store, NOTES, ["suppressed"], payload={"to": ["out@example.com"]})
    notes = NotesChannel()
    quiet = DeferredError("quiet hours", context={})
    quiet.retry_after = 0.02
    notes.fail["quiet"] = [quiet]
    notes.fail["rejected"] = [
        RecipientRejectedError(
            "the provider refuses this recipient",
            kind="email",
            address="stop@example.com",
            reason="unsubscribe",
        )
    ]
    gate = _Script(
        {
            "skip": Decision("skip", reason="duplicate alert within window"),
            "hold": Decision("hold", reason="waits for its digest"),
            "defer": Decision("defer", reason="throttled", until=time.time() + 0.05),
        }
    )
    outbox = TrackedOutbox(store)
    channels = {**sink.channels(["ok", "flaky", "bad", "gone"]), NOTES: notes}
    worker = run_worker(
        outbox,
        channels,
        DeliveryConfig(schedule_s=[0.05]),
        drain_wait_s=1,
        gates=[SuppressionGate(suppressions), gate],
    )
    assert _statuses(store_url) == {
        "ok-1": "delivered",
        "flaky-1": "delivered",  # retried once
        "bad-1": "dead",
        "gone-1": "pending",  # its channel disabled: not claimed again
        "skip": "skipped",
        "hold": "held",
        "defer": "delivered",  # deferred by the gate, then sent
        "quiet": "delivered",  # deferred by the channel, then sent
        "rejected": "dead",
        "sent": "delivered",
        "suppressed": "suppressed",
    }
    assert worker.stats.disabled_channels == {"webhook.gone"}
    assert set(_leases(store_url).values()) == {None}
    assert outbox._held == {}
    assert outbox.held == 0
    assert outbox.release_held() == 0


class _ClaimAcrossARecording(Store):
    """A claim that takes up ``WATCHED`` a second time returns only once that delivery's outcome
    is recorded: the race of a claim with a recording, in a fixed order."""

    recorded: threading.Event
    claims_of_watched = 0

    def claim_deliveries(
        self,
        limit: int,
        lease_s: float,
        *,
        now: float | None = None,
        slots: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        rows = super().claim_deliveries(limit, lease_s, now=now, slots=slots)
        if any(r["id"] == WATCHED for r in rows):
            self.claims_of_watched += 1
            if self.claims_of_watched == 2:
                assert self.recorded.wait(20)
        return rows


class _RacingOutbox(TrackedOutbox, _ClaimAcrossARecording):
    """``TrackedOutbox`` over that store: its claim remembers the lease after the recording."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.recorded = threading.Event()

    def record_attempts(
        self,
        outcomes: Sequence[dict[str, Any]],
        quarantined: Sequence[Row],
        *,
        health: HealthPolicy | None = None,
        recheck: bool = False,
    ) -> set[str]:
        disabled = super().record_attempts(outcomes, quarantined, health=health, recheck=recheck)
        if any(o["delivery_id"] == WATCHED for o in outcomes):
            self.recorded.set()
        return disabled


WATCHED = "slow-1"


def test_a_claim_the_worker_gives_back_is_forgotten(
    store: Store, store_url: str, sink: Receiver
) -> None:
    # the send outlasts its lease: the next claim takes the row up again while it is in flight,
    # and returns after its outcome is recorded; the worker gives that claim back
    sink.behaviours["slow"] = Behaviour(delay_s=2.0)
    enqueue(store, "webhook.slow", [WATCHED])
    outbox = _RacingOutbox(store)
    policy = DeliveryConfig(lease_s=1.0, per_endpoint_concurrency=1)
    run_worker(outbox, sink.channels(["slow"]), policy, drain_wait_s=1)
    assert outbox.claims_of_watched == 2
    assert sink.ids("slow") == [WATCHED]  # sent once
    assert _statuses(store_url) == {WATCHED: "delivered"}
    assert outbox._held == {}


def test_a_dropped_lease_is_forgotten_when_it_runs_out_and_another_workers_is_left_alone(
    store: Store, store_url: str, sink: Receiver
) -> None:
    # one send at a time, each longer than half the lease: the second row waits in the buffer
    # past the margin, and the worker drops it with its lease still set
    sink.behaviours["slow"] = Behaviour(delay_s=1.2)
    now = time.time()
    enqueue(store, "webhook.slow", ["s-1", "s-2"], at=[now - 2, now - 1])  # sent in this order
    outbox = TrackedOutbox(store)
    policy = DeliveryConfig(lease_s=2.0, per_endpoint_concurrency=1)
    run_worker(outbox, sink.channels(["slow"]), policy, drain_wait_s=0)
    assert sink.ids("slow") == ["s-1"]
    until = _leases(store_url)["s-2"]
    assert until is not None
    assert outbox._held == {"s-2": until}  # still leased: still held
    time.sleep(max(0.0, until - time.time()) + 0.1)
    assert outbox.held == 0  # run out: forgotten
    assert outbox._held == {}
    # another worker leases the row now; this process's shutdown leaves that lease alone
    [row] = store.claim_deliveries(10, 60, slots={"webhook.slow": 1})
    assert row["id"] == "s-2"
    assert outbox.release_held() == 0
    assert _leases(store_url)["s-2"] == row["lease_until"]


def test_shutdown_gives_back_only_leases_still_its_own(store: Store, store_url: str) -> None:
    now = time.time()
    enqueue(store, "webhook.a", ["mine"], at=now - 1)
    enqueue(store, "webhook.a", ["taken"], at=now - 10)
    enqueue(store, "webhook.a", ["retried"], at=now - 5)
    outbox = TrackedOutbox(store)
    [taken] = outbox.claim_deliveries(1, 0.3)  # oldest due first
    assert taken["id"] == "taken"
    claimed = outbox.claim_deliveries(2, 60)
    assert sorted(r["id"] for r in claimed) == ["mine", "retried"]
    # an operator's retry resets a row (its lease gone), and the row is leased again elsewhere
    time.sleep(0.4)
    with store.begin() as conn:
        conn.execute(text("UPDATE deliveries SET lease_until = NULL WHERE id = 'retried'"))
    other = {r["id"]: r["lease_until"] for r in store.claim_deliveries(10, 60)}
    assert set(other) == {"taken", "retried"}  # the expired lease and the reset row
    assert outbox.release_held() == 1
    leases = _leases(store_url)
    assert leases == {"mine": None, "taken": other["taken"], "retried": other["retried"]}
    assert outbox._held == {}


def test_a_service_stopped_with_sends_buffered_gives_their_leases_back(
    store: Store, store_url: str, sink: Receiver
) -> None:
    sink.behaviours["slow"] = Behaviour(delay_s=0.5)
    enqueue(store, "webhook.slow", ["b-1", "b-2", "b-3"])
    outbox = TrackedOutbox(store)
    policy = DeliveryConfig(lease_s=60.0, per_endpoint_concurrency=1)

    async def serve() -> None:
        service = DeliveryService(outbox, sink.channels(["slow"]), policy)
        service.start()
        while not sink.events("start"):
            await asyncio.sleep(0.01)
        assert await service.stop(10.0)
        await service.aclose()

    asyncio.run(serve())
    statuses = _statuses(store_url)
    sent = [d for d, s in statuses.items() if s == "delivered"]
    assert sent == sink.ids("slow")
    # claimed and not sent: still leased, and held by this process
    leased = {d for d, u in _leases(store_url).items() if u is not None}
    assert leased
    assert all(statuses[d] == "pending" for d in leased)
    assert set(outbox._held) == leased
    assert outbox.release_held() == len(leased)
    assert set(_leases(store_url).values()) == {None}
    assert outbox._held == {}


def test_the_tracked_outbox_seals_and_opens_with_the_hubs_privacy(
    store: Store, store_url: str, tmp_path: Any
) -> None:
    """One key cache per process: the service's outbox uses the hub's privacy (its configured
    ``key_cache``), not a second one loaded from the store's settings; it opens what the hub
    sealed."""
    from junction.store.crypto_rows import enable_privacy

    assert TrackedOutbox(store).privacy_in_use() is None  # encryption off: nothing to share
    privacy = enable_privacy(store, kek=f"file:{tmp_path / 'kek'}", key_cache=7)
    outbox = TrackedOutbox(store)
    assert outbox.privacy_in_use() is privacy
    assert outbox.privacy() is privacy
    canary = {"type": "lead.scored", "record_id": "r", "email": "canary.outbox@example.com"}
    enqueue(store, "webhook.sales", ["d-sealed"], payload=canary)
    stored = rows_of(store_url, "SELECT payload FROM deliveries")
    assert stored
    assert "canary.outbox@example.com" not in str(stored)
    [claimed] = outbox.claim_deliveries(10, 30.0)
    assert "canary.outbox@example.com" in str(claimed["payload"])
