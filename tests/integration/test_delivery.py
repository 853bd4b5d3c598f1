"""The delivery worker against a real local receiver: retries, 410, exhaustion, replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction.pipeline.hub import Hub
from junction.pipeline.replay import replay
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import SinkFaults, WebhookSink
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, scalar, write_config


@pytest.fixture
def secret() -> str:
    return generate_secret()


def _ingest(
    tmp_path: Path, store_url: str, models_dir: Path, url: str, secret: str, rows: int = 40, **kw
) -> Hub:
    cfg = write_config(tmp_path, store=store_url, url=url, secret=secret, models=models_dir, **kw)
    write_lead_csv(tmp_path / "inbox" / "l.csv", rows, seed=9, messy=False)
    hub = Hub.from_file(cfg)
    hub.run_once()
    return hub


def test_transient_failures_are_retried_with_the_same_id(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "sink.jsonl", faults=SinkFaults(fail_first=2)) as sink:
        hub = _ingest(tmp_path, store_url, models_dir, sink.url, secret)
        try:
            stats = hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
        s = sink.stats()
    n = counts["records"]
    assert counts["deliveries_delivered"] == n
    assert stats.delivered == n
    assert s["unique"] == n
    assert s["injected"] == 2 * n
    # three attempts each: two 500s, then the 2xx; one logical delivery
    assert scalar(store_url, "SELECT count(*) FROM attempts") == 3 * n
    assert (
        scalar(
            store_url, "SELECT count(*) FROM attempts WHERE outcome = 'retry' AND status_code = 500"
        )
        == 2 * n
    )
    assert scalar(store_url, "SELECT max(attempts) FROM deliveries") == 3


def test_410_disables_the_endpoint_and_keeps_the_deliveries(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "sink.jsonl", faults=SinkFaults(status=410)) as sink:
        hub = _ingest(tmp_path, store_url, models_dir, sink.url, secret)
        try:
            stats = hub.deliver(drain_wait_s=1)
            disabled = hub.store.disabled_endpoints()
            counts = hub.store.counts()
            assert stats.disabled_channels == set(disabled)
            assert set(disabled) <= {"webhook.sales", "webhook.nurture"}
            assert disabled
            # nothing lost: deliveries to the gone endpoint wait, none are dead
            assert counts["deliveries_dead"] == 0
            assert counts["deliveries_pending"] > 0
            # the receiver is back; an operator re-enables the endpoints
            sink.faults.status = None
            for ch in disabled:
                hub.store.set_endpoint(ch, disabled=False)
            hub.deliver(drain_wait_s=5)
            after = hub.store.counts()
        finally:
            hub.close()
    assert after["deliveries_delivered"] == after["records"]
    assert after["deliveries_pending"] == 0


def test_exhausted_deliveries_go_to_quarantine_and_replay_once(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "sink.jsonl", faults=SinkFaults(status=503)) as sink:
        hub = _ingest(
            tmp_path, store_url, models_dir, sink.url, secret, rows=10, schedule="[0.01, 0.01]"
        )
        try:
            stats = hub.deliver(drain_wait_s=2)
            n = hub.store.counts()["records"]
            assert stats.dead == n
            dead = [q for q in hub.store.list_quarantine() if q["stage"] == "deliver"]
            assert len(dead) == n
            assert all(q["error_code"] == "unavailable" for q in dead)
            assert scalar(store_url, "SELECT count(*) FROM attempts") == 3 * n
            sink.faults.status = None
            for q in dead:
                assert replay(hub, q["id"]) == "delivery re-queued"
            assert replay(hub, dead[0]["id"]) == "already replayed"  # second replay is a no-op
            hub.deliver(drain_wait_s=5)
            counts = hub.store.counts()
        finally:
            hub.close()
        assert sink.stats()["unique"] == n
    assert counts["deliveries_delivered"] == n
    assert counts["quarantined"] == 0


def test_redirects_are_not_followed(
    tmp_path: Path, store_url: str, models_dir: Path, secret: str
) -> None:
    with WebhookSink(secret, tmp_path / "target.jsonl") as target:
        faults = SinkFaults(redirect_to=target.url + "stolen")
        with WebhookSink(secret, tmp_path / "sink.jsonl", faults=faults) as sink:
            hub = _ingest(tmp_path, store_url, models_dir, sink.url, secret, rows=5)
            try:
                hub.deliver(drain_wait_s=0)
            finally:
                hub.close()
        assert target.stats()["received"] == 0
    codes = {r[0] for r in rows_of(store_url, "SELECT status_code FROM attempts")}
    assert codes == {308}
