"""The hygiene gate and sweeps, driven directly against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
import pytest
from pydantic import BaseModel
from sqlalchemy import select

from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import PipelineConfig
from junction.pipeline.gates import Decision, HygieneGate
from junction.pipeline.hygiene import AlertLog, RouteTable
from junction.pipeline.hygiene_sweeps import HygieneSweeps, acknowledge, digest_id
from junction.store import tables as t
from junction.store.repo import DELIVERY_COLS, Store
from outbound.base import Delivery, Receipt, Recipient

KEY = b"k" * 32
T0 = 1_000_000.0


class _Opts(BaseModel):
    pass


class Plain:
    """A channel that reaches no one in particular (a webhook)."""

    name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[BaseModel]] = _Opts

    async def send(self, delivery: Delivery) -> Receipt:
        return Receipt(delivery.delivery_id)

    async def aclose(self) -> None:
        return None


class Addressed(Plain):
    """A channel whose recipients come from the event's record (like email)."""

    name: ClassVar[str] = "email"

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        event = orjson.loads(delivery.payload)
        return [Recipient("email", a) for a in event["record"]["owners"]]


def _cfg(routes: list[dict[str, Any]]) -> dict[str, PipelineConfig]:
    return {
        "leads": PipelineConfig.model_validate(
            {
                "source": {"connector": "csv_file", "path": "x/*.csv"},
                "mapping": "csv.lead",
                "routes": routes,
            }
        )
    }


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def _event(key: str, owners: list[str] | None = None, email: str = "a@example.com") -> bytes:
    return orjson.dumps(
        {
            "type": "lead.scored",
            "record_id": f"leads:{key}",
            "pipeline": "leads",
            "entity": "lead",
            "source_key": key,
            "record": {"email": email, "owners": owners or ["ann@example.com"]},
            "score": {"value": 0.9, "grade": "A"},
        }
    )


def _delivery(did: str, channel: str, route: str, payload: bytes) -> Delivery:
    return Delivery(did, channel, "lead.scored", payload, route=route)


def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.begin() as conn:
        for row in rows:
            full = dict.fromkeys(DELIVERY_COLS)
            full.update(
                record_id=row["id"].rsplit(":", 1)[0],
                pipeline="leads",
                event_type="lead.scored",
                status="pending",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
            )
            full.update(row)
            conn.execute(t.deliveries.insert().values(**full))


def _rows(store: Store, *where: Any) -> list[Any]:
    c = t.deliveries.c
    with store.begin() as conn:
        return list(conn.execute(select(t.deliveries).where(*where).order_by(c.id)).all())


def _gate(store: Store, routes: list[dict[str, Any]]) -> HygieneGate:
    return HygieneGate(AlertLog(store, Pseudonymizer(KEY)), RouteTable(_cfg(routes)))


def _hot(to: list[str], **hygiene: Any) -> dict[str, Any]:
    """The route ``hot``: every event to ``to``, with the given hygiene settings."""
    return {"name": "hot", "when": "true", "to": to, **hygiene}


def test_dedupe_skips_the_same_alert_within_its_window(store: Store) -> None:
    gate = _gate(store, [_hot(["webhook.a"], dedupe={"window_s": 100})])
    ch = Plain()
    first = _delivery("leads:1:webhook_a", "webhook.a", "hot", _event("L1"))
    again = _delivery("leads:2:webhook_a", "webhook.a", "hot", _event("L1"))
    other = _delivery("leads:3:webhook_a", "webhook.a", "hot", _event("L2"))
    assert gate.applies(first, ch)
    assert not gate.applies(_delivery("x", "webhook.a", "cold", _event("L1")), ch)
    assert gate.decide(first, ch, T0) is None
    # the first one's retry is not a duplicate of itself
    assert gate.decide(first, ch, T0 + 1) is None
    # a concurrent repeat is caught by the reservation, before the first is even delivered
    assert gate.decide(again, ch, T0 + 2) == Decision("skip", "duplicate alert within window")
    assert gate.decide(other, ch, T0 + 2) is None
    gate.delivered(first, ch, Receipt(first.delivery_id), T0 + 3)
    assert gate.decide(again, ch, T0 + 50) is not None
    # the window counts from the delivery
    assert gate.decide(again, ch, T0 + 104) is None
    # the raw key is never stored
    with store.begin() as conn:
        keys = conn.execute(select(t.send_log.c.key)).scalars().all()
    assert keys
    assert all(k.startswith("ps_") and "L1" not in k for k in keys)


def test_dedupe_key_is_a_jmespath_and_per_channel(store: Store) -> None:
    dedupe = {"key": "record.email", "window_s": 100}
    gate = _gate(store, [_hot(["webhook.a", "webhook.b"], dedupe=dedupe)])
    ch = Plain()
    a1 = _delivery("leads:1:webhook_a", "webhook.a", "hot", _event("L1", email="x@example.com"))
    a2 = _delivery("leads:2:webhook_a", "webhook.a", "hot", _event("L2", email="x@example.com"))
    b1 = _delivery("leads:1:webhook_b", "webhook.b", "hot", _event("L1", email="x@example.com"))
    assert gate.decide(a1, ch, T0) is None
    assert gate.decide(a2, ch, T0) is not None  # another lead, the same person
    assert gate.decide(b1, ch, T0) is None  # another channel


def test_throttle_defers_per_recipient_until_the_window_frees(store: Store) -> None:
    gate = _gate(store, [_hot(["email.team"], throttle={"max": 2, "per_s": 60})])
    ch = Addressed()

    def d(n: int, owners: list[str]) -> Delivery:
        return _delivery(f"leads:{n}:email_team", "email.team", "hot", _event(f"L{n}", owners))

    ann, bob = ["ann@example.com"], ["bob@example.com"]
    for n, at in ((1, T0), (2, T0 + 10)):
        assert gate.decide(d(n, ann), ch, at) is None
        gate.delivered(d(n, ann), ch, Receipt(""), at)
    third = gate.decide(d(3, ann), ch, T0 + 20)
    assert third == Decision("defer", "throttled", until=T0 + 60)
    # another recipient is not throttled; one of two over the limit holds the whole message
    assert gate.decide(d(4, bob), ch, T0 + 20) is None
    assert gate.decide(d(5, ["ANN@example.com", "cy@example.com"]), ch, T0 + 20) is not None
    # the window frees: the deferred one goes
    assert gate.decide(d(3, ann), ch, T0 + 61) is None


def test_throttle_without_recipients_is_per_channel_and_holds_for_a_digest(store: Store) -> None:
    throttle = {"max": 1, "per_s": 60}
    gate = _gate(store, [_hot(["webhook.a"], throttle=throttle, digest={"window_s": 30})])
    ch = Plain()
    one = _delivery("leads:1:webhook_a", "webhook.a", "hot", _event("L1"))
    two = _delivery("leads:2:webhook_a", "webhook.a", "hot", _event("L2"))
    assert gate.decide(one, ch, T0) is None
    assert gate.decide(two, ch, T0 + 1) == Decision(
        "hold", "throttled: waits for the route's digest"
    )
    # a digest is never deduped or throttled
    digest = _delivery("digest:leads:hot:webhook_a:00", "webhook.a", "hot", b'{"pipeline":"leads"}')
    assert gate.decide(digest, ch, T0 + 2) is None


DIGEST_ROUTE = _hot(
    ["webhook.a"], digest={"window_s": 60, "max_items": 10, "template": "hot_digest"}
)


def test_digest_gathers_held_items_when_full_or_old(store: Store) -> None:
    routes = RouteTable(_cfg([DIGEST_ROUTE]))
    sweeps = HygieneSweeps(store, routes)
    held = [
        {
            "id": f"leads:{n:02d}:webhook_a",
            "channel": "webhook.a",
            "route": "hot",
            "status": "held",
            "payload": _event(f"L{n}").decode(),
            "created_at": T0 + n,
        }
        for n in range(23)
    ]
    _insert(store, held)
    # two full digests at once; the rest waits for the window
    assert sweeps.flush_digests(T0 + 30) == 2
    digests = _rows(store, t.deliveries.c.id.like("digest:%"))
    assert len(digests) == 2
    first = digests[
        [d.id for d in digests].index(digest_id("leads", "hot", "webhook.a", str(held[0]["id"])))
    ]
    body = orjson.loads(first.payload)
    assert body["type"] == "digest"
    assert body["count"] == 10
    assert [i["source_key"] for i in body["items"]] == [f"L{n}" for n in range(10)]
    assert (first.status, first.route, first.channel, first.event_type) == (
        "pending",
        "hot",
        "webhook.a",
        "lead.digest",
    )
    assert "." not in first.id
    items = _rows(store, t.deliveries.c.group_id == first.id)
    assert [r.status for r in items] == ["digested"] * 10
    assert len(_rows(store, t.deliveries.c.status == "held")) == 3
    assert sweeps.flush_digests(T0 + 61) == 0  # the oldest of the rest is 20 + 60
    assert sweeps.flush_digests(T0 + 80) == 1
    assert not _rows(store, t.deliveries.c.status == "held")
    assert routes.template("leads", "hot", first.id) == "hot_digest"


def test_digest_ids_are_deterministic(store: Store) -> None:
    # a sweep that wrote a digest but lost its transaction writes the same id again
    a = digest_id("leads", "hot", "webhook.a", "leads:1:webhook_a")
    assert a == digest_id("leads", "hot", "webhook.a", "leads:1:webhook_a")
    assert a != digest_id("leads", "hot", "webhook.a", "leads:2:webhook_a")
    assert a.startswith("digest:leads:hot:webhook_a:")
    assert "." not in a


def test_held_items_of_a_route_without_digest_are_released(store: Store) -> None:
    sweeps = HygieneSweeps(store, RouteTable(_cfg([{"when": "true", "to": ["webhook.a"]}])))
    _insert(
        store,
        [
            {
                "id": "leads:1:webhook_a",
                "channel": "webhook.a",
                "route": "route0",
                "status": "held",
                "payload": _event("L1").decode(),
            }
        ],
    )
    assert sweeps.flush_digests(T0) == 0
    assert [r.status for r in _rows(store)] == ["pending"]


ESCALATING = _hot(["slack.a"], escalate={"after_s": 300, "to": ["sms.b", "email.c"]})


def _deliver(store: Store, gate: HygieneGate, did: str, channel: str, at: float) -> None:
    [row] = _rows(store, t.deliveries.c.id == did)
    d = Delivery(did, channel, row.event_type, row.payload.encode(), route=row.route)
    assert gate.applies(d, Plain())
    assert gate.decide(d, Plain(), at) is None
    gate.delivered(d, Plain(), Receipt(did), at)
    with store.begin() as conn:
        conn.execute(
            t.deliveries.update()
            .where(t.deliveries.c.id == did)
            .values(status="delivered", delivered_at=at)
        )


def _escalating_alert(store: Store) -> tuple[HygieneGate, HygieneSweeps, str]:
    """An alert of the escalating route to slack.a, delivered at T0; its gate, sweeps and id."""
    gate = _gate(store, [ESCALATING])
    sweeps = HygieneSweeps(store, gate.routes)
    root = "leads:1:slack_a"
    _insert(
        store,
        [{"id": root, "channel": "slack.a", "route": "hot", "payload": _event("L1").decode()}],
    )
    _deliver(store, gate, root, "slack.a", T0)
    return gate, sweeps, root


def test_escalation_walks_the_chain_until_acknowledged(store: Store) -> None:
    gate, sweeps, root = _escalating_alert(store)
    [row] = _rows(store, t.deliveries.c.id == root)
    assert row.escalate_at == T0 + 300
    assert sweeps.escalate_due(T0 + 299) == 0
    assert sweeps.escalate_due(T0 + 300) == 1
    assert sweeps.escalate_due(T0 + 301) == 0  # once per step
    [esc1] = _rows(store, t.deliveries.c.id == f"{root}:esc1")
    assert (esc1.channel, esc1.group_id, esc1.route, esc1.status) == (
        "sms.b",
        root,
        "hot",
        "pending",
    )
    assert orjson.loads(esc1.payload)["escalated_from"] == root
    assert orjson.loads(esc1.payload)["source_key"] == "L1"
    _deliver(store, gate, esc1.id, "sms.b", T0 + 310)
    assert sweeps.escalate_due(T0 + 610) == 1
    [esc2] = _rows(store, t.deliveries.c.id == f"{root}:esc2")
    assert (esc2.channel, esc2.group_id) == ("email.c", root)
    assert orjson.loads(esc2.payload)["escalated_from"] == esc1.id
    # the last step does not escalate further
    _deliver(store, gate, esc2.id, "email.c", T0 + 620)
    [row2] = _rows(store, t.deliveries.c.id == esc2.id)
    assert row2.escalate_at is None
    assert sweeps.escalate_due(T0 + 10_000) == 0


def test_an_ack_anywhere_in_the_chain_stops_it(store: Store) -> None:
    gate, sweeps, root = _escalating_alert(store)
    assert sweeps.escalate_due(T0 + 300) == 1
    _deliver(store, gate, f"{root}:esc1", "sms.b", T0 + 310)
    # the root is acknowledged late: the first escalation does not escalate again
    row, new = acknowledge(store, root, now=T0 + 320)
    assert new
    assert row is not None
    assert row["ack_at"] == T0 + 320
    assert acknowledge(store, root, now=T0 + 330)[1] is False
    assert acknowledge(store, "nope")[0] is None
    assert sweeps.escalate_due(T0 + 10_000) == 0
    assert not _rows(store, t.deliveries.c.id == f"{root}:esc2")


def test_an_acknowledged_alert_never_escalates(store: Store) -> None:
    _, sweeps, root = _escalating_alert(store)
    acknowledge(store, root, now=T0 + 5)
    assert sweeps.escalate_due(T0 + 1000) == 0
    assert [r.id for r in _rows(store)] == [root]


def test_prune_drops_rows_older_than_every_window(store: Store) -> None:
    gate = _gate(store, [_hot(["webhook.a"], dedupe={"window_s": 100})])
    sweeps = HygieneSweeps(store, gate.routes)
    d = _delivery("leads:1:webhook_a", "webhook.a", "hot", _event("L1"))
    gate.delivered(d, Plain(), Receipt(""), T0)
    assert sweeps.prune(T0 + 100) == 0
    assert sweeps.prune(T0 + 1000) == 1
