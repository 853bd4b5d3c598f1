"""The outbox store: fair per-channel claims, endpoint health bookkeeping, events, and two workers
sharing one store."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import DeliveryWorker
from junction.store.events import AlertPolicy, emit, list_events
from junction.store.outbox import HealthPolicy, endpoint_health
from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from tests.integration.delivery_support import Behaviour, enqueue, receiver


@pytest.fixture
def store(store_url: str):
    s = Store.open(store_url)
    yield s
    s.close()


def test_claims_give_each_channel_at_most_its_free_slots(store: Store) -> None:
    old = time.time() - 100
    enqueue(store, "webhook.big", [f"big-{k}" for k in range(50)], at=old)
    enqueue(store, "webhook.small", [f"small-{k}" for k in range(5)])
    enqueue(store, "webhook.other", [f"other-{k}" for k in range(5)])
    rows = store.claim_deliveries(
        100, 30, slots={"webhook.big": 3, "webhook.small": 2, "webhook.other": 0}
    )
    assert Counter(r["channel"] for r in rows) == {"webhook.big": 3, "webhook.small": 2}
    # the oldest of each channel, and leased: a second claim does not see them again
    assert {r["id"] for r in rows if r["channel"] == "webhook.big"} == {"big-0", "big-1", "big-2"}
    again = store.claim_deliveries(100, 30, slots={"webhook.big": 3})
    assert {r["id"] for r in again} == {"big-3", "big-4", "big-5"}


def test_a_global_limit_is_shared_round_robin(store: Store) -> None:
    old = time.time() - 100
    enqueue(store, "webhook.a", [f"a-{k}" for k in range(10)], at=old)
    enqueue(store, "webhook.b", [f"b-{k}" for k in range(10)])
    enqueue(store, "webhook.c", [f"c-{k}" for k in range(10)])
    rows = store.claim_deliveries(6, 30, slots={"webhook.a": 5, "webhook.b": 5, "webhook.c": 5})
    # a's older backlog does not take the whole claim
    assert Counter(r["channel"] for r in rows) == {"webhook.a": 2, "webhook.b": 2, "webhook.c": 2}


def test_disabled_channels_are_not_claimed(store: Store) -> None:
    enqueue(store, "webhook.off", ["off-1"])
    enqueue(store, "webhook.on", ["on-1"])
    store.set_endpoint("webhook.off", disabled=True, reason="maintenance")
    rows = store.claim_deliveries(10, 30, slots={"webhook.off": 5, "webhook.on": 5})
    assert [r["id"] for r in rows] == ["on-1"]
    assert store.next_due_at(["webhook.off"]) is None
    kinds = [(e["kind"], e["subject"], e["detail"]) for e in list_events(store)]
    assert kinds == [("endpoint.disabled", "webhook.off", {"reason": "maintenance", "auto": False})]


def _outcome(did: str, channel: str, at: float, ok: bool) -> dict:
    return {
        "delivery_id": did,
        "channel": channel,
        "pipeline": "leads",
        "attempt_no": 1,
        "started_at": at,
        "duration_ms": 0.0,
        "status_code": 200 if ok else 500,
        "error": None if ok else "UnavailableError: 500",
        "outcome": "delivered" if ok else "retry",
        "new_status": "delivered" if ok else "pending",
        "next_attempt_at": at,
        "health": "ok" if ok else "fail",
    }


def test_health_streaks(store: Store) -> None:
    enqueue(store, "webhook.h", [f"h-{k}" for k in range(6)])
    policy = HealthPolicy(disable_after_s=1000)
    t0 = time.time() - 100
    store.record_attempts([_outcome("h-0", "webhook.h", t0, False)], [], health=policy)
    h = endpoint_health(store)["webhook.h"]
    assert (h["failing_since"], h["last_failure_at"], h["last_success_at"]) == (t0, t0, None)
    # a later failure keeps the streak's start
    store.record_attempts([_outcome("h-1", "webhook.h", t0 + 1, False)], [], health=policy)
    assert endpoint_health(store)["webhook.h"]["failing_since"] == t0
    # a success clears it; a failure after it in the same batch starts a new streak
    store.record_attempts(
        [_outcome("h-2", "webhook.h", t0 + 2, True), _outcome("h-3", "webhook.h", t0 + 3, False)],
        [],
        health=policy,
    )
    h = endpoint_health(store)["webhook.h"]
    assert (h["failing_since"], h["last_success_at"]) == (t0 + 3, t0 + 2)
    # an older success recorded late does not clear a newer streak
    store.record_attempts([_outcome("h-4", "webhook.h", t0 + 2.5, True)], [], health=policy)
    assert endpoint_health(store)["webhook.h"]["failing_since"] == t0 + 3
    # the window passes: the next failure disables, with an event and an alert
    alerts = AlertPolicy.of(["webhook.ops"], None)
    disabled = store.record_attempts(
        [_outcome("h-5", "webhook.h", t0 + 4, False)],
        [],
        health=HealthPolicy(disable_after_s=0.5, alerts=alerts),
    )
    assert disabled == {"webhook.h"}
    [event] = list_events(store, kinds=["endpoint.disabled"])
    assert event["detail"]["failing_since"] == t0 + 3
    alerts_due = store.claim_deliveries(10, 30, slots={"webhook.ops": 10})
    assert [r["id"] for r in alerts_due] == [f"alert:{event['id']}:webhook_ops"]


def test_events_filter_and_alerts_never_target_their_subject(store: Store) -> None:
    alerts = AlertPolicy.of(["webhook.ops", "webhook.pager"], ["endpoint.disabled"])
    with store.begin() as conn:
        emit(conn, "endpoint.disabled", "webhook.ops", {"reason": "x"}, alerts=alerts)
        emit(conn, "message.attempt.exhausted", "d-1", {}, alerts=alerts)  # not an alerting kind
        emit(conn, "endpoint.disabled", "webhook.sales", {}, alerts=alerts, from_alert=True)
    assert len(list_events(store)) == 3
    assert [e["kind"] for e in list_events(store, kinds=["message.attempt.exhausted"])] == [
        "message.attempt.exhausted"
    ]
    due = store.claim_deliveries(10, 30, slots={"webhook.ops": 10, "webhook.pager": 10})
    # only the first event alerted, and only the channel it is not about
    assert [r["channel"] for r in due] == ["webhook.pager"]


def test_two_workers_on_one_store_send_each_delivery_once(store: Store, store_url: str) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["shared"] = Behaviour(delay_s=0.01)
        enqueue(store, "webhook.shared", [f"s-{k}" for k in range(300)])
        policy = DeliveryConfig(concurrency=20, per_endpoint_concurrency=10)
        other = Store.open(store_url)

        async def both() -> None:
            workers = [DeliveryWorker(s, rx.channels(["shared"]), policy) for s in (store, other)]
            try:
                await asyncio.gather(*(w.run(drain_wait_s=0) for w in workers))
            finally:
                for w in workers:
                    await w.aclose()

        try:
            asyncio.run(both())
        finally:
            other.close()
        ids = rx.ids("shared")
    assert sorted(ids) == sorted(f"s-{k}" for k in range(300))  # each once, none missing


def test_alerts_with_a_key_are_quiet_within_their_window(store: Store) -> None:
    quiet = AlertPolicy.of(["webhook.ops"], None, quiet_s=300)
    with store.begin() as conn:
        emit(conn, "message.attempt.exhausted", "d-1", {}, alerts=quiet, alert_key="webhook.a")
        emit(conn, "message.attempt.exhausted", "d-2", {}, alerts=quiet, alert_key="webhook.a")
        emit(conn, "message.attempt.exhausted", "d-3", {}, alerts=quiet, alert_key="webhook_b")
        # a key that LIKE would confuse with another ('_' matches any character) is its own
        emit(conn, "message.attempt.exhausted", "d-4", {}, alerts=quiet, alert_key="webhook.b")
    loud = AlertPolicy.of(["webhook.ops"], None, quiet_s=0)
    with store.begin() as conn:
        emit(
            conn,
            "message.attempt.exhausted",
            "d-5",
            {},
            alerts=loud,
            alert_key="webhook.a",
            now=time.time() + 1,
        )
    alerted = [e["subject"] for e in list_events(store) if "alert_key" in e["detail"]]
    assert alerted == ["d-1", "d-3", "d-4", "d-5"]
    due = store.claim_deliveries(10, 30, slots={"webhook.ops": 10}, now=time.time() + 5)
    assert len(due) == 4
