"""A scheduled drift check that alerts, with ``drift.retrain`` set, retrains the model under the
check's lease: one new version, one ``model.retrained`` event, not again within the day."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from junction.pipeline.hub import Hub
from junction.serve.drift import DriftChecks
from junction.serve.leases import PipelineLeases
from junction.store.drift import list_reports
from junction.store.events import list_events
from junction.store.outcomes import OutcomeIn, record_outcomes
from scoring import stages
from scoring.synthetic import generate_leads
from tests.drift_support import drop_leads, save_version, train, write_drift_config
from tests.integration.helpers import rows_of


@pytest.fixture(scope="module")
def trained():
    return train(n=1500)


async def _run(checks: DriftChecks, until) -> bool:
    await asyncio.to_thread(checks.prepare)
    checks.start()
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(until) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return await checks.stop(30)


def test_an_alert_retrains_once_under_the_lease(tmp_path, store_url, trained) -> None:
    models = tmp_path / "models"
    save_version(models, *trained)
    cfg_path = write_drift_config(tmp_path, store_url, models, retrain=True)
    # a day's window: the restart an hour later still sees the records scored now
    cfg_path.write_text(cfg_path.read_text().replace("window_s: 3600", "window_s: 86400"))
    drop_leads(tmp_path, "a.csv", 800, seed=22, shift=True)
    hub = Hub.from_file(cfg_path)
    try:
        [summary] = hub.run_once()
        assert summary.stored == 800
        converted = {lead["external_id"]: lead["converted"] for lead in generate_leads(800, 22)}
        stored = rows_of(store_url, "SELECT id, payload FROM records WHERE pipeline = 'leads'")
        items = [
            OutcomeIn(
                kind="converted",
                label=converted[orjson.loads(payload)["external_id"]],
                observed_at=time.time(),
                record_id=rid,
            )
            for rid, payload in stored
        ]
        record_outcomes(hub.store, items, source="test")

        def retrained() -> list[dict]:
            return list_events(hub.store, kinds=["model.retrained"])

        t0 = time.time() + 1.0
        a = DriftChecks(hub.cfg, hub.store, PipelineLeases(hub.store, "h:1:a"), clock=lambda: t0)
        assert asyncio.run(_run(a, retrained))
        [event] = retrained()
        # a restart an hour later finds the same drift, but the version was retrained today
        t1 = t0 + 3600.0
        b = DriftChecks(hub.cfg, hub.store, PipelineLeases(hub.store, "h:2:b"), clock=lambda: t1)
        assert asyncio.run(_run(b, lambda: len(list_reports(hub.store, pipeline="leads")) >= 2))
        reports = list_reports(hub.store, pipeline="leads")
        events = retrained()
    finally:
        hub.close()
    assert [r.status for r in reports] == ["alert", "alert"]
    assert events == [event]
    detail = event["detail"]
    assert detail["outcome"] in ("promoted", "staged")
    assert (detail["base_version"], detail["version"], detail["n"]) == ("1", "2", 800)
    assert event["at"] == t0
    assert stages.versions(models, "lead-score") == ["1", "2"]
    card = stages.read_card(models, "lead-score", "2")
    assert card["training_data"]["trigger"] == "drift"
    assert stages.history(models, "lead-score")[-1].actor == "system:drift"


def test_no_retrain_without_the_setting(tmp_path, store_url, trained) -> None:
    models = tmp_path / "models"
    save_version(models, *trained)
    cfg_path = write_drift_config(tmp_path, store_url, models, retrain=False)
    drop_leads(tmp_path, "a.csv", 400, seed=23, shift=True)
    hub = Hub.from_file(cfg_path)
    try:
        hub.run_once()
        checks = DriftChecks(hub.cfg, hub.store, PipelineLeases(hub.store, "h:1:a"))
        assert asyncio.run(_run(checks, lambda: bool(list_reports(hub.store, pipeline="leads"))))
        [report] = list_reports(hub.store, pipeline="leads")
        events = list_events(hub.store, kinds=["model.retrained"])
    finally:
        hub.close()
    assert report.status == "alert"
    assert events == []
    assert stages.versions(models, "lead-score") == ["1"]
