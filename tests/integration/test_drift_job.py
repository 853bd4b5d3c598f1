"""Drift checks end to end: a CSV drop scored by a model with a reference, then the drift job,
its saved report, its ``model.drift`` event and the alert delivered through the alert channel
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest

from junction.pipeline.config import load_config
from junction.pipeline.drift_job import model_version, run_drift_check
from junction.pipeline.hub import Hub
from junction.store.drift import latest_reports, list_reports
from junction.store.events import list_events
from scoring.stages import production_version
from tests.drift_support import drop_leads, save_version, train, write_drift_config
from tests.integration.helpers import rows_of


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 with its reference profile, version 2 without one (as before references)."""
    root = tmp_path_factory.mktemp("models")
    trained, leads = train()
    save_version(root, trained, leads)
    save_version(root, trained, leads, reference=False)
    return root


def _ingest(cfg_path: Path) -> Hub:
    hub = Hub.from_file(cfg_path)
    [summary] = hub.run_once()
    assert summary.stored > 0
    return hub


def _alert_rows(store_url: str) -> list[tuple]:
    return rows_of(
        store_url,
        "SELECT id, channel, event_type, status, payload FROM deliveries "
        "WHERE pipeline = '_hub' ORDER BY id",
    )


def test_a_resampled_copy_is_ok_and_alerts_nobody(tmp_path, store_url, models) -> None:
    cfg_path = write_drift_config(tmp_path, store_url, models)
    drop_leads(tmp_path, "a.csv", 800, seed=21)
    hub = _ingest(cfg_path)
    try:
        report = run_drift_check(hub.store, hub.cfg, "leads")
        events = list_events(hub.store, kinds=["model.drift", "model.retrain_requested"])
        saved = list_reports(hub.store, pipeline="leads")
    finally:
        hub.close()
    assert report.status == "ok"
    assert report.n == 800
    assert (report.model, report.model_version, report.pipeline) == ("lead-score", "1", "leads")
    assert len(report.features) == 13
    assert events == []
    assert _alert_rows(store_url) == []
    [row] = saved
    assert row.id == report.id
    assert row == report


def test_an_injected_shift_alerts_through_the_alert_channel(tmp_path, store_url, models) -> None:
    cfg_path = write_drift_config(tmp_path, store_url, models, retrain=True)
    drop_leads(tmp_path, "a.csv", 800, seed=22, shift=True)
    hub = _ingest(cfg_path)
    try:
        report = run_drift_check(hub.store, hub.cfg, "leads")
        events = list_events(hub.store, kinds=["model.drift", "model.retrain_requested"])
        pending = _alert_rows(store_url)
        stats = hub.deliver(drain_wait_s=0)
        delivered = _alert_rows(store_url)
        # the next check finds the same drift: saved and evented, but not alerted again today
        again = run_drift_check(hub.store, hub.cfg, "leads", now=time.time() + 60)
        events_after = list_events(hub.store, kinds=["model.drift"])
    finally:
        hub.close()
    assert report.status == "alert"
    assert report.worst[0] == "page_views"
    from junction.core.metrics import REGISTRY

    labels = {"pipeline": "leads", "model": "lead-score"}
    assert REGISTRY.get_sample_value("junction_drift_status", labels) == 2  # for Prometheus
    assert REGISTRY.get_sample_value("junction_drift_max_psi", labels) == report.max_psi
    drift, retrain = events
    assert (drift["kind"], retrain["kind"]) == ("model.drift", "model.retrain_requested")
    assert drift["subject"] == "lead-score/1"
    assert drift["detail"]["pipeline"] == "leads"
    assert drift["detail"]["report_id"] == report.id
    assert drift["detail"]["worst"][0]["feature"] == "page_views"
    assert drift["detail"]["worst"][0]["status"] == "alert"
    assert [r[0] for r in pending] == sorted(
        [f"alert:{drift['id']}:file_ops", f"alert:{retrain['id']}:file_ops"]
    )
    assert {(r[1], r[2], r[3]) for r in pending} == {("file.ops", "junction.alert", "pending")}
    body = orjson.loads(pending[0][4])
    assert body["type"] == "junction.alert"
    assert body["kind"] in {"model.drift", "model.retrain_requested"}
    # the delivery worker sent both through the file channel
    assert stats.delivered == 2
    assert {r[3] for r in delivered} == {"delivered"}
    written = [
        json.loads(line)
        for f in (tmp_path / "alerts").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert {w["delivery_id"] for w in written} == {r[0] for r in pending}
    assert again.status == "alert"
    assert len(events_after) == 2
    assert len(_alert_rows(store_url)) == 2


def test_a_warning_alerts_and_the_quiet_window_is_per_status(tmp_path, store_url, models) -> None:
    cfg_path = write_drift_config(tmp_path, store_url, models)
    drop_leads(tmp_path, "a.csv", 800, seed=23, shift=True)
    hub = _ingest(cfg_path)
    try:
        # the same data against a lenient threshold warns instead: another status, another alert
        cfg = load_config(cfg_path)
        drift = cfg.pipelines["leads"].scoring.drift.model_copy(
            update={"psi_alert": 100.0, "ks_alert": 1.0}
        )
        scoring = cfg.pipelines["leads"].scoring.model_copy(update={"drift": drift})
        pipe = cfg.pipelines["leads"].model_copy(update={"scoring": scoring})
        lenient = cfg.model_copy(update={"pipelines": {"leads": pipe}})
        warned = run_drift_check(hub.store, lenient, "leads")
        alerted = run_drift_check(hub.store, hub.cfg, "leads")
    finally:
        hub.close()
    assert warned.status == "warn"
    assert alerted.status == "alert"
    assert len(_alert_rows(store_url)) == 2  # warn, then the escalation to alert


def test_a_version_without_a_reference_is_reported_not_crashed(tmp_path, store_url, models) -> None:
    cfg_path = write_drift_config(tmp_path, store_url, models, version="2")
    drop_leads(tmp_path, "a.csv", 300, seed=24, shift=True)
    hub = _ingest(cfg_path)
    try:
        report = run_drift_check(hub.store, hub.cfg, "leads")
        latest = latest_reports(hub.store, ["leads", "other"])
    finally:
        hub.close()
    assert report.status == "no_reference"
    assert report.reason == "the model has no drift reference"
    assert report.features == []
    assert latest == {"leads": report}
    assert _alert_rows(store_url) == []


def test_a_small_or_old_window_is_insufficient(tmp_path, store_url, models) -> None:
    cfg_path = write_drift_config(tmp_path, store_url, models)
    drop_leads(tmp_path, "a.csv", 120, seed=25, shift=True)
    hub = _ingest(cfg_path)
    try:
        small = run_drift_check(hub.store, hub.cfg, "leads")
        drop_leads(tmp_path, "b.csv", 400, seed=26, shift=True)
        hub.run_once()
        # two hours later the window (an hour) holds none of these scores
        old = run_drift_check(hub.store, hub.cfg, "leads", now=time.time() + 7200)
        now = run_drift_check(hub.store, hub.cfg, "leads")
        history = list_reports(hub.store, pipeline="leads", limit=10)
    finally:
        hub.close()
    assert (small.status, small.n) == ("insufficient", 120)
    assert (old.status, old.n) == ("insufficient", 0)
    assert (now.status, now.n) == ("alert", 520)
    assert [r.id for r in history] == [old.id, now.id, small.id]  # newest (by time) first
    assert len(_alert_rows(store_url)) == 1


def test_the_version_is_the_pin_else_the_production_stage(tmp_path, store_url, models) -> None:
    cfg = load_config(write_drift_config(tmp_path, store_url, models, version="2"))
    assert model_version(cfg, "leads") == ("lead-score", "2")
    scoring = cfg.pipelines["leads"].scoring.model_copy(update={"version": None})
    pipe = cfg.pipelines["leads"].model_copy(update={"scoring": scoring})
    unpinned = cfg.model_copy(update={"pipelines": {"leads": pipe}})
    assert model_version(unpinned, "leads") == (
        "lead-score",
        production_version(models, "lead-score"),
    )


def test_a_pinned_version_that_does_not_exist_is_reported(tmp_path, store_url, models) -> None:
    cfg = load_config(write_drift_config(tmp_path, store_url, models, version="9"))
    hub = Hub(cfg)
    try:
        report = run_drift_check(hub.store, cfg, "leads")
        saved = list_reports(hub.store, pipeline="leads")
    finally:
        hub.close()
    assert (report.status, report.model_version) == ("no_reference", "9")
    assert report.reason is not None
    assert saved == [report]
