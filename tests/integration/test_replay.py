"""Replaying deliveries, one or in bulk, on SQLite and PostgreSQL: store, worker, API and CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from junction.cli.main import app
from junction.core.errors import ConfigError, FatalError
from junction.pipeline.prepare import quarantine_row
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.outbox_admin import delivery_status, replay_deliveries
from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import SinkFaults, WebhookSink
from scoring.synthetic import write_lead_csv
from tests.api.harness import ApiHarness, running_api, write_api_config
from tests.integration.helpers import write_config

T0 = 1_767_000_000.0  # deliveries are created at T0 + n (a fixed clock keeps filters exact)
# id, channel, status, created at T0 + n
ROWS = [
    ("d1", "webhook.sales", "dead", 1),
    ("d2", "webhook.sales", "dead", 2),
    ("d3", "webhook.sales", "dead", 3),
    ("d4", "webhook.nurture", "dead", 4),
    ("s1", "webhook.sales", "suppressed", 5),
    ("k1", "webhook.sales", "skipped", 6),
    ("ok", "webhook.sales", "delivered", 7),
    ("p1", "webhook.sales", "pending", 8),
    ("h1", "webhook.sales", "held", 9),
]


def _seed(store: Store) -> None:
    rows = [
        {
            "id": did,
            "record_id": f"r-{did}",
            "pipeline": "leads",
            "channel": ch,
            "event_type": "lead.scored",
            "payload": '{"x": 1}',
            "status": st,
            "attempts": 8,
            "next_attempt_at": T0 + n,
            "lease_until": T0 + 100,
            "created_at": T0 + n,
        }
        for did, ch, st, n in ROWS
    ]
    with store.begin() as conn:
        conn.execute(t.deliveries.insert(), rows)
    for did, _ch, st, _n in ROWS:
        if st == "dead":
            err = FatalError("receiver said 422")
            store.quarantine_one(quarantine_row("leads", "deliver", did, err, b"{}", {}, None))


def _state(store: Store) -> dict[str, tuple[str, int, float | None]]:
    d = t.deliveries.c
    with store.begin() as conn:
        rows = conn.execute(select(d.id, d.status, d.attempts, d.lease_until)).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _open_dead_letters(store: Store) -> set[str]:
    q = t.quarantine.c
    with store.begin() as conn:
        keys = conn.execute(
            select(q.record_key).where(q.stage == "deliver", q.status == "open")
        ).scalars()
        return set(keys)


@pytest.fixture
def store(store_url: str) -> Any:
    s = Store.open(store_url)
    _seed(s)
    yield s
    s.close()


def test_bulk_replay_by_channel_and_time_requeues_and_closes_dead_letters(store: Store) -> None:
    audited: list[list[str]] = []
    before = time.time()
    n = replay_deliveries(
        store,
        channel="webhook.sales",
        since=T0 + 2,
        until=T0 + 4,
        audit=lambda _conn, ids: audited.append(ids),
    )
    assert n == 2
    assert audited == [["d2", "d3"]]
    state = _state(store)
    for did in ("d2", "d3"):
        status, attempts, lease = state[did]
        assert (status, attempts, lease) == ("pending", 0, None)
    assert state["d1"][0] == state["d4"][0] == "dead"
    assert state["s1"][0] == "suppressed"
    assert _open_dead_letters(store) == {"d1", "d4"}
    d = t.deliveries.c
    with store.begin() as conn:
        due = conn.execute(select(d.next_attempt_at).where(d.id == "d2")).scalar_one()
    assert due >= before
    # replaying again finds nothing: a replay is not repeated
    assert replay_deliveries(store, channel="webhook.sales", since=T0 + 2, until=T0 + 4) == 0
    assert audited == [["d2", "d3"]]


def test_bulk_replay_takes_the_oldest_first_up_to_the_limit(store: Store) -> None:
    assert replay_deliveries(store, limit=2) == 2
    assert _open_dead_letters(store) == {"d3", "d4"}
    assert replay_deliveries(store, limit=10) == 2
    assert _open_dead_letters(store) == set()
    assert replay_deliveries(store) == 0


def test_single_replay_from_any_replayable_status(store: Store) -> None:
    assert replay_deliveries(store, ids=["s1"], status=None) == 1
    assert replay_deliveries(store, ids=["k1"], status="skipped") == 1
    assert replay_deliveries(store, ids=["d4"], status="dead", channel="webhook.sales") == 0
    assert replay_deliveries(store, ids=["d4"], status=None) == 1
    # delivered, pending, held and unknown deliveries are left alone
    assert replay_deliveries(store, ids=["ok", "p1", "h1", "nope"], status=None) == 0
    state = _state(store)
    assert [state[i][0] for i in ("s1", "k1", "d4")] == ["pending"] * 3
    assert [state[i][0] for i in ("ok", "p1", "h1")] == ["delivered", "pending", "held"]
    assert delivery_status(store, "nope") is None
    assert replay_deliveries(store, ids=[]) == 0


def test_a_replay_forgets_the_provider_status_of_the_earlier_send(store: Store) -> None:
    # a worker takes a pending delivery with a provider status as sent already (case 59): a
    # replay asks for a new send, so the old status must not stand in for one
    d = t.deliveries.c
    with store.begin() as conn:
        conn.execute(t.deliveries.update().where(d.id == "d1").values(remote_status="bounce"))
    assert replay_deliveries(store, ids=["d1"]) == 1
    with store.begin() as conn:
        row = conn.execute(select(d.status, d.remote_status).where(d.id == "d1")).one()
    assert tuple(row) == ("pending", None)


def test_only_replayable_statuses_and_sane_limits(store: Store) -> None:
    for status in ("delivered", "pending", "held", "digested"):
        with pytest.raises(ConfigError, match="cannot be replayed"):
            replay_deliveries(store, status=status)
    with pytest.raises(ConfigError, match="limit"):
        replay_deliveries(store, limit=0)


def test_a_replayed_dead_delivery_is_sent_again_with_the_same_id(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    from junction.pipeline.hub import Hub

    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl", faults=SinkFaults(status=503)) as sink:
        cfg = write_config(
            tmp_path,
            store=store_url,
            url=sink.url,
            secret=secret,
            models=models_dir,
            schedule="[0.01, 0.01]",
        )
        write_lead_csv(tmp_path / "inbox" / "l.csv", 10, seed=9, messy=False)
        hub = Hub.from_file(cfg)
        try:
            hub.run_once()
            assert hub.deliver(drain_wait_s=2).dead == hub.store.counts()["records"]
            dead = hub.store.counts()["deliveries_dead"]
            sink.faults.status = None
            # the sales endpoint first, then everything else that is dead
            sales = replay_deliveries(hub.store, channel="webhook.sales")
            assert sales + replay_deliveries(hub.store) == dead
            hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
        stats = sink.stats()
    assert counts["deliveries_delivered"] == dead
    assert counts["quarantined"] == 0
    assert stats["unique"] == dead


# -- the API and the CLI -------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, store_url: str, models_dir: Path) -> Any:
    with running_api(write_api_config(tmp_path, store=store_url, models=models_dir)) as h:
        _seed(h.ctx.store)
        yield h


def _post(api: ApiHarness, path: str, role: str = "operator", json: Any = None) -> Any:
    with api.http() as h:
        return h.post("/api/v1" + path, json=json, headers=api.headers(role))


def test_api_replays_one_delivery(api: ApiHarness) -> None:
    r = _post(api, "/deliveries/d1/replay")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "d1", "previous_status": "dead", "status": "pending"}
    again = _post(api, "/deliveries/d1/replay")
    assert again.status_code == 409
    assert again.json()["code"] == "delivery_not_replayable"
    assert _post(api, "/deliveries/ok/replay").status_code == 409
    missing = _post(api, "/deliveries/nope/replay")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert _post(api, "/deliveries/s1/replay", role="viewer").status_code == 403
    [entry] = AuditLog(api.ctx.store).query(action="delivery.replay")
    assert entry.target == "d1"
    assert entry.detail["previous_status"] == "dead"
    assert entry.detail["replayed"] == 1
    assert _open_dead_letters(api.ctx.store) == {"d2", "d3", "d4"}


def test_api_bulk_replay_answers_the_count(api: ApiHarness) -> None:
    body = {"channel": "webhook.sales", "since": "2025-12-29T09:20:02Z", "limit": 1}
    r = _post(api, "/deliveries/replay", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"replayed": 1}
    assert _state(api.ctx.store)["d2"][0] == "pending"
    r = _post(api, "/deliveries/replay", json={"status": "suppressed"})
    assert r.json() == {"replayed": 1}
    assert _post(api, "/deliveries/replay", json={"channel": "webhook.nope"}).status_code == 404
    assert _post(api, "/deliveries/replay", json={"status": "delivered"}).status_code == 422
    assert _post(api, "/deliveries/replay", json={"since": "2025-12-29T09:20:02"}).status_code == (
        422
    )  # a time without an offset is ambiguous
    assert _post(api, "/deliveries/replay", role="viewer", json={}).status_code == 403
    entries = AuditLog(api.ctx.store).query(action="delivery.replay_bulk")
    assert [e.detail["replayed"] for e in entries] == [1, 1]
    assert entries[1].detail["channel"] == "webhook.sales"
    assert entries[1].detail["ids"] == ["d2"]


def test_cli_replays_one_and_many(api: ApiHarness) -> None:
    config = str(api.root / "junction.yaml")
    runner = CliRunner()
    one = runner.invoke(app, ["deliveries", "replay", "d4", "-c", config])
    assert one.exit_code == 0, one.output
    assert "re-queued d4 (was dead)" in one.stdout
    not_again = runner.invoke(app, ["deliveries", "replay", "d4", "-c", config])
    assert not_again.exit_code == 1
    many = runner.invoke(
        app,
        [
            "deliveries",
            "replay",
            "-c",
            config,
            "--channel",
            "webhook.sales",
            "--since",
            "2025-12-29T09:20:02+00:00",
        ],
    )
    assert many.exit_code == 0, many.output
    assert "re-queued 2 dead deliveries" in many.stdout
    assert _open_dead_letters(api.ctx.store) == {"d1"}
    bad = runner.invoke(app, ["deliveries", "replay", "-c", config, "--since", "yesterday"])
    assert bad.exit_code == 2
    actions = [e.action for e in AuditLog(api.ctx.store).query(action="delivery.*")]
    assert actions == ["delivery.replay_bulk", "delivery.replay"]


def test_a_suppressed_delivery_is_sent_once_lifted_and_replayed(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    import yaml

    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.hub import Hub
    from junction.pipeline.state import state_dir
    from junction.store.suppressions import SuppressionList
    from tests.contract.channels.email_sendgrid import options_for
    from tests.fakes.sendgrid import SendGridFake
    from tests.fakes.server import serve_app

    fake = SendGridFake()
    with serve_app(fake.app) as base:
        (tmp_path / "inbox").mkdir()
        config = {
            "store": store_url,
            "models_dir": str(models_dir),
            "pipelines": {
                "leads": {
                    "source": {"connector": "csv_file", "path": "inbox/*.csv", "settle_seconds": 0},
                    "mapping": "csv.lead",
                    "workers": 0,
                    "scoring": {"model": "lead-score"},
                    "routes": [{"when": "score.value >= 0.0", "to": ["email_sendgrid.sales"]}],
                }
            },
            "channels": {"email_sendgrid.sales": options_for(base)},
        }
        path = tmp_path / "junction.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        write_lead_csv(tmp_path / "inbox" / "l.csv", 5, seed=3, messy=False)
        hub = Hub.from_file(path)
        try:
            hub.run_once()
            n = hub.store.counts()["records"]
            assert n > 0
            # the recipient unsubscribed before anything went out
            sl = SuppressionList(hub.store, Pseudonymizer.load(state_dir(hub.cfg)))
            sl.add("email", "sales@example.com", reason="unsubscribe", source="test")
            hub.deliver(drain_wait_s=1)
            assert fake.seen_ids() == []
            assert replay_deliveries(hub.store, status="suppressed") == n
            # still suppressed: the gate holds them back again
            hub.deliver(drain_wait_s=1)
            assert fake.seen_ids() == []
            # the person opted back in; an operator replays what was held back
            assert sl.lift("email", "sales@example.com")
            assert replay_deliveries(hub.store, status="suppressed") == n
            hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
            fake.release()
    assert counts["deliveries_delivered"] == n
    assert len(set(fake.seen_ids())) == n
