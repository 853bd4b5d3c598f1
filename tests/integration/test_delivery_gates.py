"""Send gates in the delivery worker: the suppression list, deferrals, skips and holds, and what
a provider's recipient rejection does."""

from __future__ import annotations

import time
from pathlib import Path

from junction.core.errors import DeferredError, RecipientRejectedError
from junction.pipeline.config import DeliveryConfig, HubConfig, Route
from junction.pipeline.gates import Decision, build_gates
from junction.pipeline.hygiene_sweeps import digest_id
from junction.pipeline.suppression_gate import SuppressionGate
from junction.store.repo import Store
from junction.store.suppressions import SuppressionList
from outbound.base import Delivery, OutboundChannel, Receipt
from tests.integration.delivery_support import NotesChannel, enqueue, run_worker
from tests.integration.helpers import rows_of, scalar

CH = "notes.people"


def _status(store_url: str, delivery_id: str) -> tuple:
    [row] = rows_of(
        store_url,
        f"SELECT status, attempts, remote_id FROM deliveries WHERE id = '{delivery_id}'",
    )
    return tuple(row)


def test_suppressed_recipients_are_never_sent_to(
    store: Store, store_url: str, suppressions: SuppressionList
) -> None:
    suppressions.add("email", "gone@example.com", reason="bounce", source="test")
    enqueue(store, CH, ["all-suppressed"], payload={"to": ["gone@example.com"]})
    enqueue(store, CH, ["one-left"], payload={"to": ["gone@example.com", "ok@example.com"]})
    enqueue(store, CH, ["clean"], payload={"to": ["ok@example.com"]})
    notes = NotesChannel()
    worker = run_worker(
        store,
        {CH: notes},
        DeliveryConfig(),
        drain_wait_s=0,
        gates=[SuppressionGate(suppressions)],
    )
    sent = {d.delivery_id: d for d in notes.sent}
    assert set(sent) == {"one-left", "clean"}
    assert sent["one-left"].exclude == frozenset({"gone@example.com"})
    assert sent["clean"].exclude == frozenset()
    assert worker.stats.suppressed == 1
    assert _status(store_url, "all-suppressed")[0] == "suppressed"
    status, attempts, remote_id = _status(store_url, "one-left")
    assert (status, attempts) == ("delivered", 1)
    assert remote_id.startswith("msg-")  # the provider's id is kept
    [(outcome,)] = rows_of(
        store_url, "SELECT outcome FROM attempts WHERE delivery_id = 'all-suppressed'"
    )
    assert outcome == "suppressed"
    # a suppression is not a failure: nothing quarantined, the endpoint is not to blame
    assert scalar(store_url, "SELECT count(*) FROM quarantine") == 0
    assert scalar(store_url, "SELECT count(*) FROM endpoints WHERE failing_since IS NOT NULL") == 0


def test_a_rejected_recipient_is_suppressed_and_the_delivery_dead_lettered(
    store: Store, store_url: str, suppressions: SuppressionList
) -> None:
    enqueue(store, CH, ["rej"], payload={"to": ["stop@example.com"]})
    notes = NotesChannel()
    notes.fail["rej"] = [
        RecipientRejectedError(
            "the provider refuses this recipient",
            kind="email",
            address="stop@example.com",
            reason="unsubscribe",
        )
    ]
    gate = SuppressionGate(suppressions)
    run_worker(store, {CH: notes}, DeliveryConfig(), drain_wait_s=0, gates=[gate])
    assert _status(store_url, "rej")[0] == "dead"
    assert suppressions.suppressed("email", ["stop@example.com"]) == {"stop@example.com"}
    assert suppressions.entry("email", "stop@example.com")["reason"] == "unsubscribe"
    [(error_code, context)] = rows_of(store_url, "SELECT error_code, context FROM quarantine")
    assert error_code == "recipient_rejected"
    assert "stop@example.com" not in context  # the address never reaches logs or quarantine
    # a replay (after the person opted back in or not) meets the suppression list first
    enqueue(store, CH, ["again"], payload={"to": ["stop@example.com"]})
    run_worker(store, {CH: notes}, DeliveryConfig(), drain_wait_s=0, gates=[gate])
    assert _status(store_url, "again")[0] == "suppressed"
    assert notes.sent == []


def test_deferrals_never_consume_attempts(store: Store, store_url: str) -> None:
    enqueue(store, CH, ["quiet"], payload={"to": ["night@example.com"]})
    notes = NotesChannel()
    notes.fail["quiet"] = [DeferredError("quiet hours", context={}) for _ in range(5)]
    for exc in notes.fail["quiet"]:
        exc.retry_after = 0.02
    # one attempt in the schedule: five deferrals would have exhausted it five times over
    policy = DeliveryConfig(schedule_s=[])
    worker = run_worker(store, {CH: notes}, policy, drain_wait_s=1)
    assert notes.deferred == 5
    assert worker.stats.deferred == 5
    assert _status(store_url, "quiet")[:2] == ("delivered", 1)
    assert rows_of(store_url, "SELECT attempt_no, outcome FROM attempts") == [(1, "delivered")]


class Scripted:
    """A gate that answers from a script per delivery id, and notes deliveries."""

    def __init__(self, script: dict[str, list[Decision]]) -> None:
        self.script = script
        self.noted: list[str] = []

    def applies(self, delivery: Delivery, channel: OutboundChannel) -> bool:
        return delivery.delivery_id in self.script

    def decide(self, delivery: Delivery, channel: OutboundChannel, now: float) -> Decision | None:
        steps = self.script[delivery.delivery_id]
        return steps.pop(0) if steps else None

    def delivered(
        self, delivery: Delivery, channel: OutboundChannel, receipt: Receipt, now: float
    ) -> None:
        self.noted.append(delivery.delivery_id)


def test_gate_decisions_set_the_status(store: Store, store_url: str) -> None:
    soon = time.time() + 0.05
    script = {
        "skip": [Decision("skip", reason="duplicate alert within window")],
        "hold": [Decision("hold", reason="waits for its digest")],
        "defer": [Decision("defer", reason="throttled", until=soon)] * 3,
        "pass": [],
    }
    enqueue(store, CH, [*script, "plain"], payload={"to": ["a@example.com"]})
    gate = Scripted(script)
    notes = NotesChannel()
    policy = DeliveryConfig(schedule_s=[])
    worker = run_worker(store, {CH: notes}, policy, drain_wait_s=1, gates=[gate])
    assert _status(store_url, "skip")[0] == "skipped"
    assert _status(store_url, "hold")[0] == "held"
    assert _status(store_url, "defer")[:2] == ("delivered", 1)
    assert sorted(d.delivery_id for d in notes.sent) == ["defer", "pass", "plain"]
    # delivered() is called for the deliveries the gate applied to, once sent
    assert sorted(gate.noted) == ["defer", "pass"]
    assert (worker.stats.skipped, worker.stats.held, worker.stats.deferred) == (1, 1, 3)


def test_the_route_template_reaches_the_channel(store: Store) -> None:
    enqueue(store, CH, ["t1"], payload={"to": ["a@example.com"]}, route="hot")
    enqueue(store, CH, ["t2"], payload={"to": ["a@example.com"]}, route="unknown")
    notes = NotesChannel()
    route = Route(name="hot", when="true", to=[CH], template="hot-lead")
    run_worker(
        store, {CH: notes}, DeliveryConfig(), drain_wait_s=0, routes={"leads": {"hot": route}}
    )
    got = {d.delivery_id: (d.route, d.template) for d in notes.sent}
    assert got == {"t1": ("hot", "hot-lead"), "t2": ("unknown", None)}


def test_a_digest_renders_with_its_routes_digest_template(store: Store) -> None:
    digest = digest_id("leads", "hot", CH, "leads:abc:1")
    enqueue(store, CH, [digest, "one"], payload={"to": ["a@example.com"]}, route="hot")
    notes = NotesChannel()
    route = Route.model_validate(
        {
            "name": "hot",
            "when": "true",
            "to": [CH],
            "template": "hot-lead",
            "digest": {"window_s": 60, "template": "hot-digest"},
        }
    )
    run_worker(
        store, {CH: notes}, DeliveryConfig(), drain_wait_s=0, routes={"leads": {"hot": route}}
    )
    got = {d.delivery_id: d.template for d in notes.sent}
    assert got == {digest: "hot-digest", "one": "hot-lead"}


def test_build_gates_starts_with_the_suppression_list(store: Store, tmp_path: Path) -> None:
    cfg = HubConfig(models_dir=str(tmp_path / "models"))
    gates = build_gates(cfg, store, tmp_path)
    assert isinstance(gates[0], SuppressionGate)
    assert (tmp_path / "pseudonym.key").exists()


def test_sweeps_run_while_the_worker_runs(store: Store) -> None:
    calls: list[float] = []

    def sweep(now: float) -> int:
        calls.append(now)
        return 0

    enqueue(store, CH, ["s1"], payload={"to": ["a@example.com"]}, at=time.time() + 0.3)
    run_worker(store, {CH: NotesChannel()}, DeliveryConfig(), drain_wait_s=1, sweeps=[sweep])
    assert calls


def test_the_hub_wires_gates_routes_alerts_and_caps(tmp_path: Path, store_url: str) -> None:
    from junction.pipeline.hub import Hub
    from junction.store.events import AlertPolicy

    hook = {"url": "https://hooks.example.com/x", "secret": "whsec_" + "A" * 32}
    cfg = HubConfig.model_validate(
        {
            "store": store_url,
            "models_dir": str(tmp_path / "models"),
            "channels": {
                "webhook.sales": {**hook, "max_in_flight": 3},
                "webhook.ops": hook,
            },
            "alerts": {"to": ["webhook.ops"], "kinds": ["endpoint.disabled"]},
        }
    )
    hub = Hub(cfg)
    try:
        opts = hub.delivery_options()
    finally:
        hub.close()
    assert isinstance(opts["gates"][0], SuppressionGate)
    assert opts["limits"] == {"webhook.sales": 3}
    assert opts["alerts"] == AlertPolicy(("webhook.ops",), frozenset({"endpoint.disabled"}))
    assert all(callable(s) for s in opts["sweeps"])
