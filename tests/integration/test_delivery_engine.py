"""The delivery engine against a local many-endpoint receiver: per-endpoint queues and caps,
the retry schedule, Retry-After, endpoint auto-disable with events and alerts."""

from __future__ import annotations

import time

import pytest

from junction.pipeline.config import DeliveryConfig
from junction.store.events import AlertPolicy, list_events
from junction.store.outbox import endpoint_health
from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from tests.integration.delivery_support import Behaviour, enqueue, receiver, run_worker
from tests.integration.helpers import rows_of, scalar


@pytest.fixture
def store(store_url: str):
    s = Store.open(store_url)
    yield s
    s.close()


def test_one_slow_endpoint_does_not_delay_the_other_99(store: Store, store_url: str) -> None:
    names = [f"ep{i}" for i in range(100)]
    with receiver(generate_secret()) as rx:

        def the_others_answered() -> bool:
            return sum(1 for e in rx.events("end") if e[1] != "ep0") == 99 * 3

        # slow until every fast delivery has been answered (a fixed delay raced a loaded
        # CI machine): an engine waiting on it would sit out the whole minute
        rx.behaviours["ep0"] = Behaviour(hold_until=the_others_answered, hold_max_s=60)
        channels = rx.channels(names)
        # the slow endpoint's backlog is the oldest: a FIFO batch engine would wait on it
        old = time.time() - 60
        enqueue(store, "webhook.ep0", [f"slow-{k}" for k in range(8)], at=old)
        for name in names[1:]:
            enqueue(store, f"webhook.{name}", [f"{name}-{k}" for k in range(3)])
        policy = DeliveryConfig(concurrency=50, per_endpoint_concurrency=4)
        began = time.monotonic()
        worker = run_worker(store, channels, policy, drain_wait_s=0)
        elapsed = time.monotonic() - began
        ends = rx.events("end")
    assert worker.stats.delivered == 8 + 99 * 3
    assert elapsed < 60  # the slow one was let go because the others were done, not by time
    first_slow = min(seq for seq, name, *_ in ends if name == "ep0")
    last_fast = max(seq for seq, name, *_ in ends if name != "ep0")
    # every fast endpoint had all its deliveries answered before the slow one answered once
    assert last_fast < first_slow
    assert {name for _, name, *_ in ends} == set(names)
    assert rx.peak["ep0"] <= 4
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 305


def test_one_event_fanned_out_to_1000_endpoints_is_not_held_by_the_slow_one(
    store: Store, store_url: str
) -> None:
    """RELIABILITY case 17: one event to 1,000 endpoints, one of which answers only after
    all the others have (or after a minute): a batch engine waiting on it would stall."""
    names = [f"f{i}" for i in range(1000)]
    with receiver(generate_secret()) as rx:

        def the_others_answered() -> bool:
            return len({e[1] for e in rx.events("end")} - {"f0"}) == 999

        rx.behaviours["f0"] = Behaviour(hold_until=the_others_answered, hold_max_s=60)
        channels = rx.channels(names)
        event = {"type": "lead.scored", "record_id": "leads:one"}
        # the slow endpoint's backlog is the oldest, as after an outage of its own
        enqueue(store, "webhook.f0", [f"one:f0:{k}" for k in range(8)], at=time.time() - 60)
        for name in names[1:]:
            enqueue(store, f"webhook.{name}", [f"one:{name}"], payload=event)
        began = time.monotonic()
        worker = run_worker(
            store, channels, DeliveryConfig(concurrency=50, per_endpoint_concurrency=4), 0
        )
        elapsed = time.monotonic() - began
        ends = rx.events("end")
    assert worker.stats.delivered == 8 + 999
    first_slow = min(seq for seq, name, *_ in ends if name == "f0")
    last_fast = max(seq for seq, name, *_ in ends if name != "f0")
    assert last_fast < first_slow
    assert elapsed < 60  # the slow one was let go because the others were done, not by time
    assert rx.peak["f0"] <= 4  # its own cap held while it was slow
    assert {name for _, name, *_ in ends} == set(names)
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 1007


def test_the_per_endpoint_cap_holds_and_max_in_flight_overrides_it(store: Store) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["a"] = Behaviour(delay_s=0.2)
        rx.behaviours["b"] = Behaviour(delay_s=0.2)
        channels = rx.channels(["a", "b"])
        enqueue(store, "webhook.a", [f"a-{k}" for k in range(16)])
        enqueue(store, "webhook.b", [f"b-{k}" for k in range(16)])
        policy = DeliveryConfig(concurrency=50, per_endpoint_concurrency=5)
        run_worker(store, channels, policy, drain_wait_s=0, limits={"webhook.a": 2})
        peak = dict(rx.peak)
    assert peak["a"] == 2
    assert peak["b"] == 5


def test_the_global_cap_holds_across_endpoints(store: Store) -> None:
    names = [f"g{i}" for i in range(6)]
    with receiver(generate_secret()) as rx:
        for n in names:
            rx.behaviours[n] = Behaviour(delay_s=0.2)
        channels = rx.channels(names)
        for n in names:
            enqueue(store, f"webhook.{n}", [f"{n}-{k}" for k in range(4)])
        policy = DeliveryConfig(concurrency=5, per_endpoint_concurrency=3)
        run_worker(store, channels, policy, drain_wait_s=0)
        events = rx.events()
    current = peak = 0
    for *_, kind, _status in events:
        current += 1 if kind == "start" else -1
        peak = max(peak, current)
    assert peak <= 5


def test_retries_follow_the_schedule_with_the_same_id(store: Store, store_url: str) -> None:
    schedule = [0.3, 0.6]
    with receiver(generate_secret()) as rx:
        rx.behaviours["r"] = Behaviour(status=lambda n, wid: 500 if n < 2 else 200)
        enqueue(store, "webhook.r", ["r-1"])
        policy = DeliveryConfig(schedule_s=schedule)
        worker = run_worker(store, rx.channels(["r"]), policy, drain_wait_s=2)
        ids = [wid for _, _, wid, kind, _ in rx.events("start")]
    assert worker.stats.delivered == 1
    assert ids == ["r-1"] * 3
    rows = rows_of(
        store_url,
        "SELECT attempt_no, started_at, duration_ms, outcome, status_code FROM attempts "
        "ORDER BY attempt_no",
    )
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (1, "retry", 500),
        (2, "retry", 500),
        (3, "delivered", 200),
    ]
    for k, base in enumerate(schedule):
        # the delay counts from the failed attempt's start; jitter is ±10 %
        assert rows[k + 1][1] - rows[k][1] >= 0.9 * base


def test_retries_of_one_outage_are_spread_by_jitter_not_synchronized(
    store: Store, store_url: str
) -> None:
    """RELIABILITY case 17: 400 deliveries fail in the same second of an outage; their next
    attempts, an hour later, are spread over the schedule's ±10 % window instead of all hitting
    the recovering endpoint at one instant."""
    base, n = 3600.0, 400
    with receiver(generate_secret()) as rx:
        rx.behaviours["out"] = Behaviour(status=lambda k, wid: 503)
        enqueue(store, "webhook.out", [f"o-{k}" for k in range(n)])
        policy = DeliveryConfig(schedule_s=[base, base], disable_after_s=None)
        worker = run_worker(store, rx.channels(["out"]), policy, drain_wait_s=0)
    assert worker.stats.delivered == 0
    rows = rows_of(
        store_url,
        "SELECT d.next_attempt_at, a.started_at FROM deliveries d "
        "JOIN attempts a ON a.delivery_id = d.id WHERE d.status = 'pending'",
    )
    assert len(rows) == n  # one failed attempt each, every one waiting for its retry
    delays = [float(next_at) - float(started) for next_at, started in rows]
    assert all(0.9 * base - 1 <= d <= 1.1 * base + 1 for d in delays)
    due = sorted(float(next_at) for next_at, _ in rows)
    # uniform over the 720 s window: the whole window is used, and no 10 s slice takes more
    # than a few times its share (~5.6 retries); a synchronized schedule puts all 400 in one
    assert due[-1] - due[0] >= 0.15 * base
    slices: dict[int, int] = {}
    for t in due:
        slices[int(t // 10)] = slices.get(int(t // 10), 0) + 1
    assert max(slices.values()) <= 25
    assert len(slices) >= 50


def test_retry_after_is_honoured(store: Store, store_url: str) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["t"] = Behaviour(
            status=lambda n, wid: 429 if n == 0 else 200, retry_after="1"
        )
        enqueue(store, "webhook.t", ["t-1"])
        policy = DeliveryConfig(schedule_s=[0.01, 0.01])
        run_worker(store, rx.channels(["t"]), policy, drain_wait_s=0)
        [(status, attempts, next_at)] = rows_of(
            store_url, "SELECT status, attempts, next_attempt_at FROM deliveries"
        )
        [(started,)] = rows_of(store_url, "SELECT started_at FROM attempts")
        assert (status, attempts) == ("pending", 1)
        assert next_at - started >= 1.0  # Retry-After: 1 beats the 0.01 s schedule
        run_worker(store, rx.channels(["t"]), policy, drain_wait_s=3)
    starts = rows_of(store_url, "SELECT started_at FROM attempts ORDER BY attempt_no")
    assert len(starts) == 2
    assert starts[1][0] - starts[0][0] >= 1.0


def _spread(n: int, span_s: float) -> list[float]:
    now = time.time()
    return [now + span_s * k / n for k in range(n)]


def test_always_500_exhausts_the_message_and_disables_the_endpoint(
    store: Store, store_url: str
) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["down"] = Behaviour(status=lambda n, wid: 500)
        channels = rx.channels(["down", "ops"])
        ids = [f"d-{k}" for k in range(30)]
        enqueue(store, "webhook.down", ids, at=_spread(30, 3.0))
        policy = DeliveryConfig(schedule_s=[0.05, 0.05], disable_after_s=1.0)
        alerts = AlertPolicy.of(["webhook.ops"], None)
        worker = run_worker(store, channels, policy, drain_wait_s=1, alerts=alerts)
        alert_bodies = [b for b in rx.bodies if b.get("type") == "junction.alert"]
    assert worker.stats.disabled_channels == {"webhook.down"}
    health = endpoint_health(store)["webhook.down"]
    assert health["disabled"] is True
    assert "failing" in health["reason"]
    [disabled] = list_events(store, kinds=["endpoint.disabled"])
    assert disabled["subject"] == "webhook.down"
    assert disabled["detail"]["auto"] is True
    exhausted = list_events(store, kinds=["message.attempt.exhausted"])
    assert exhausted
    assert {e["subject"] for e in exhausted} <= set(ids)
    assert all(e["detail"]["attempts"] == 3 for e in exhausted)
    dead = scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'dead'")
    assert dead == len(exhausted)
    # the rest wait for the endpoint to be re-enabled: nothing lost, nothing dead-lettered
    pending = scalar(
        store_url,
        "SELECT count(*) FROM deliveries WHERE status = 'pending' AND channel = 'webhook.down'",
    )
    assert dead + pending == 30
    assert pending > 0
    # the ops channel heard of the disable once, and of the exhausted messages once (they all
    # failed on one channel within the quiet window), each by a delivery named after its event
    kinds = sorted(b["kind"] for b in alert_bodies)
    assert kinds == ["endpoint.disabled", "message.attempt.exhausted"]
    assert sum("alert_key" in e["detail"] for e in exhausted) == 1
    [alert] = [b for b in alert_bodies if b["kind"] == "endpoint.disabled"]
    assert alert["subject"] == "webhook.down"
    alert_ids = {
        r[0] for r in rows_of(store_url, "SELECT id FROM deliveries WHERE channel = 'webhook.ops'")
    }
    assert f"alert:{disabled['id']}:webhook_ops" in alert_ids
    # re-enabling clears the failure streak and says so
    store.set_endpoint("webhook.down", disabled=False)
    assert endpoint_health(store)["webhook.down"]["failing_since"] is None
    assert [e["subject"] for e in list_events(store, kinds=["endpoint.enabled"])] == [
        "webhook.down"
    ]


def test_alternating_200_500_keeps_the_endpoint_enabled(store: Store, store_url: str) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["flaky"] = Behaviour(status=lambda n, wid: 200 if n % 2 == 0 else 500)
        enqueue(store, "webhook.flaky", [f"f-{k}" for k in range(30)], at=_spread(30, 3.0))
        policy = DeliveryConfig(schedule_s=[0.05] * 6, disable_after_s=1.0)
        worker = run_worker(store, rx.channels(["flaky"]), policy, drain_wait_s=1)
    assert worker.stats.disabled_channels == set()
    assert endpoint_health(store)["webhook.flaky"]["disabled"] is False
    assert list_events(store, kinds=["endpoint.disabled"]) == []
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 30


def test_failures_after_a_healthy_window_do_not_disable(store: Store, store_url: str) -> None:
    # an early failure, then successes for longer than the window, then a short failing streak
    def status(n: int, wid: str) -> int:
        if n == 0 or wid.startswith("late-"):
            return 500
        return 200

    with receiver(generate_secret()) as rx:
        rx.behaviours["c"] = Behaviour(status=status)
        now = time.time()
        enqueue(
            store,
            "webhook.c",
            [f"ok-{k}" for k in range(15)],
            at=[now + 0.1 * k for k in range(15)],
        )
        enqueue(
            store,
            "webhook.c",
            [f"late-{k}" for k in range(4)],
            at=[now + 1.5 + 0.1 * k for k in range(4)],
        )
        policy = DeliveryConfig(schedule_s=[0.05, 0.05], disable_after_s=1.0)
        worker = run_worker(store, rx.channels(["c"]), policy, drain_wait_s=1)
    assert worker.stats.disabled_channels == set()
    health = endpoint_health(store)["webhook.c"]
    assert health["disabled"] is False
    assert health["failing_since"] is not None  # failing now, but not for disable_after_s
    assert health["last_success_at"] < health["failing_since"]
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'dead'") == 4
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'") == 15


def test_a_failing_alert_channel_never_alerts_about_itself_in_a_loop(
    store: Store, store_url: str
) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["main"] = Behaviour(status=lambda n, wid: 500)
        rx.behaviours["ops"] = Behaviour(status=lambda n, wid: 500)
        enqueue(store, "webhook.main", [f"m-{k}" for k in range(3)])
        policy = DeliveryConfig(schedule_s=[0.01], disable_after_s=None)
        alerts = AlertPolicy.of(["webhook.ops"], None)
        run_worker(store, rx.channels(["main", "ops"]), policy, drain_wait_s=1, alerts=alerts)
    # 3 messages exhausted → 1 alert (one per failing channel in the quiet window); the alert
    # exhausted too → an event, but no alert about an alert
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE channel = 'webhook.ops'") == 1
    exhausted = list_events(store, kinds=["message.attempt.exhausted"])
    assert len(exhausted) == 4
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0


def test_410_disables_at_once_with_an_event_and_an_alert_to_the_owner(store: Store) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["gone"] = Behaviour(status=lambda n, wid: 410)
        enqueue(store, "webhook.gone", ["g-1", "g-2"])
        policy = DeliveryConfig(disable_after_s=None)
        alerts = AlertPolicy.of(["webhook.ops"], None)  # the operators' channel
        worker = run_worker(
            store, rx.channels(["gone", "ops"]), policy, drain_wait_s=1, alerts=alerts
        )
        alert_bodies = [b for b in rx.bodies if b.get("type") == "junction.alert"]
    assert worker.stats.disabled_channels == {"webhook.gone"}
    [event] = list_events(store, kinds=["endpoint.disabled"])
    assert event["detail"]["status_code"] == 410
    # RELIABILITY case 7: the owner hears of it at once (not after disable_after_s)
    [alert] = [b for b in alert_bodies if b["kind"] == "endpoint.disabled"]
    assert alert["subject"] == "webhook.gone"


def test_a_429_with_retry_after_120_waits_at_least_120_seconds(store: Store) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["busy"] = Behaviour(status=lambda n, wid: 429, retry_after="120")
        enqueue(store, "webhook.busy", ["b-1"])
        policy = DeliveryConfig(schedule_s=[1, 1, 1])  # the schedule alone would say 1 s
        started = time.time()
        run_worker(store, rx.channels(["busy"]), policy, drain_wait_s=0)
    [(status, attempts, due)] = rows_of(
        store.engine.url.render_as_string(hide_password=False),
        "SELECT status, attempts, next_attempt_at FROM deliveries",
    )
    assert (status, attempts) == ("pending", 1)
    assert due - started >= 120


def test_a_channel_s_own_max_in_flight_is_its_default_cap(store: Store) -> None:
    with receiver(generate_secret()) as rx:
        rx.behaviours["batchy"] = Behaviour(delay_s=0.2)
        [channel] = rx.channels(["batchy"]).values()
        channel.max_in_flight = 7  # e.g. a batching channel asking for a full batch
        enqueue(store, "webhook.batchy", [f"b-{k}" for k in range(20)])
        policy = DeliveryConfig(concurrency=50, per_endpoint_concurrency=2)
        run_worker(store, {"webhook.batchy": channel}, policy, drain_wait_s=0)
        assert rx.peak["batchy"] == 7


def test_a_send_slower_than_its_lease_is_not_sent_again(store: Store, store_url: str) -> None:
    """Found by the fault suite: a send that outlived its lease was released before its outcome
    was recorded, and a claim in between took the still-pending row up again: sent twice."""
    ids = [f"slow-{k}" for k in range(240)]
    with receiver(generate_secret()) as rx:
        rx.behaviours["ep"] = Behaviour(delay_s=0.25)
        enqueue(store, "webhook.ep", ids)
        policy = DeliveryConfig(concurrency=40, per_endpoint_concurrency=40, lease_s=0.1)
        worker = run_worker(store, rx.channels(["ep"]), policy, drain_wait_s=1.0)
        answered = rx.ids("ep")
    assert worker.stats.delivered == len(ids)
    assert sorted(answered) == sorted(ids)  # each answered once: none sent twice
    assert scalar(store_url, "SELECT count(*) FROM attempts WHERE outcome = 'delivered'") == len(
        ids
    )


def _with_failures(status: int, store: Store) -> list[tuple[int, str, str, str, int]]:
    """The receiver's events when the first 8 sends, at once, fail with ``status``."""
    with receiver(generate_secret()) as rx:
        rx.behaviours["gw"] = Behaviour(delay_s=0.1, status=lambda n, wid: status if n < 8 else 200)
        enqueue(store, "webhook.gw", [f"gw-{k}" for k in range(16)])
        policy = DeliveryConfig(concurrency=50, per_endpoint_concurrency=8, schedule_s=[0.05] * 3)
        worker = run_worker(store, rx.channels(["gw"]), policy, drain_wait_s=0)
        events = rx.events()
    assert worker.stats.delivered == 16
    return events


def _after_the_failures(status: int, store: Store) -> list[str]:
    """Start/end events after the last failed answer: 8 sends at once fail with ``status``."""
    events = _with_failures(status, store)
    last_failure = max(i for i, (*_, kind, st) in enumerate(events) if kind == "end" and st != 200)
    return [kind for *_, kind, _st in events[last_failure + 1 :]]


def _successes_side_by_side(status: int, store: Store) -> int:
    """How many of the sends that succeed start before the first of them ends.

    Counted on the sends themselves, so it does not hang on when the failed answers end
    relative to the new sends (a slot freed by one failure can start a send before the next
    failure's answer is written)."""
    events = _with_failures(status, store)
    started: dict[str, int] = {}  # webhook-id -> its latest start (a retry reuses the id)
    succeeded: set[int] = set()
    first_ok_end = None
    for i, (_seq, _name, wid, kind, st) in enumerate(events):
        if kind == "start":
            started[wid] = i
        elif st == 200:
            succeeded.add(started[wid])
            first_ok_end = i if first_ok_end is None else first_ok_end
    assert first_ok_end is not None
    return sum(1 for i in succeeded if i < first_ok_end)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_throttle_the_endpoint_and_successes_restore_it(
    store: Store, status: int
) -> None:
    # RELIABILITY case 7: 8 sends at once all answered 502/504 halve the cap from 8 to 1, so
    # the next send runs alone; each success adds one place back
    after = _after_the_failures(status, store)
    assert after[:3] == ["start", "end", "start"], after[:10]
    starts_before_first_end = after.index("end")
    assert starts_before_first_end == 1


def test_a_500_keeps_the_endpoint_cap(store: Store) -> None:
    # sends go out side by side again at once (a 502 would let the first success run alone)
    assert _successes_side_by_side(500, store) >= 4
