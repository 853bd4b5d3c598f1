"""``/metrics`` of a running ``junction serve``: the counters move with the work, in the
Prometheus text format, without credentials; ``/readyz`` reports the scheduler."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar
from tests.serve.helpers import Serve, drop, wait_for, write_serve_config


def _scrape(serve: Serve) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = serve.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_the_work(tmp_path: Path, store_url: str, models_dir: Path) -> None:
    rows = 1500
    secret = generate_secret()
    src = tmp_path / "leads.csv"
    write_lead_csv(src, rows, seed=14, messy=True)
    inbox = tmp_path / "inbox"
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_serve_config(
            tmp_path, store=store_url, models=models_dir, url=sink.url, secret=secret
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            before = _scrape(serve)
            assert _get(before, "junction_records_in_total", pipeline="leads", stage="extract") == 0
            assert _get(before, "junction_outbox_lag_seconds") == 0
            ready = serve.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["scheduler"] == "ok"

            drop(src, inbox)
            wait_for(lambda: (inbox / "processed" / "leads.csv").exists(), 20, "the file archived")
            wait_for(
                lambda: (
                    scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'pending'")
                    == 0
                ),
                20,
                "deliveries sent",
            )
            after = _scrape(serve)
            assert serve.stop() == 0

    records = scalar(store_url, "SELECT count(*) FROM records")
    quarantined = scalar(store_url, "SELECT count(*) FROM quarantine")
    deliveries = scalar(store_url, "SELECT count(*) FROM deliveries")
    assert quarantined > 0
    assert deliveries > 0

    def m(name: str, **labels: str) -> float:
        return _get(after, name, **labels)

    assert m("junction_records_in_total", pipeline="leads", stage="extract") == rows
    assert m("junction_records_out_total", pipeline="leads", stage="store") == records
    by_code = sum(
        v
        for (name, labels), v in after.items()
        if name == "junction_quarantined_total" and ("pipeline", "leads") in labels
    )
    assert by_code == quarantined
    assert m("junction_runs_total", pipeline="leads", outcome="succeeded") >= 1
    assert m("junction_files_total", pipeline="leads", outcome="claimed") == 1
    assert m("junction_files_total", pipeline="leads", outcome="processed") == 1
    assert m("junction_deliveries_total", channel="webhook.sales", outcome="delivered") == (
        deliveries
    )
    assert m("junction_delivery_seconds_count", channel="webhook.sales") == deliveries
    assert m("junction_outbox_lag_seconds") == 0


def test_outbox_lag_is_the_age_of_the_oldest_due_delivery(tmp_path: Path, models_dir: Path) -> None:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    secret = generate_secret()
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 400, seed=15, messy=False)
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        sink.faults.delay_s = 30  # the receiver hangs: deliveries stay due and unsent
        cfg = write_serve_config(
            tmp_path, store=store, models=models_dir, url=sink.url, secret=secret, grace=3
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            drop(src, tmp_path / "inbox")
            wait_for(lambda: sink.stats()["received"] > 0, 20, "sends under way")
            created = scalar(store, "SELECT min(created_at) FROM deliveries")
            time.sleep(1.5)
            lag = _get(_scrape(serve), "junction_outbox_lag_seconds")
            scraped_at = time.time()
            assert serve.stop() == 0
    assert 1.5 <= lag <= scraped_at - created + 0.5
