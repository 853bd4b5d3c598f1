"""Scheduled drift checks: each slot checked once across processes, not again after a restart
within the slot, started and stopped by ``junction serve``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from junction.pipeline.config import load_config
from junction.serve.drift import DriftChecks, lease_name, slot_of
from junction.serve.leases import PipelineLeases
from junction.store.drift import list_reports
from junction.store.repo import Store
from scoring.synthetic import write_lead_csv
from tests.drift_support import save_version, train
from tests.serve.helpers import Serve, drop, pipeline_yaml, write_serve_config

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv}}
    mapping: csv.lead
    scoring: {{model: lead-score, version: "1", drift: {{every_s: {every}, min_records: 1}}}}
  unscored:
    source: {{connector: csv_file, path: inbox2/*.csv}}
    mapping: csv.lead
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_version(root, *train(n=1500))
    return root


def _cfg(tmp_path: Path, store_url: str, models: Path, every: float):
    path = tmp_path / "junction.yaml"
    path.write_text(CONFIG.format(store=store_url, models=models, every=every))
    return load_config(path)


async def _run_for(seconds: float, *checks: DriftChecks) -> list[bool]:
    for c in checks:
        await asyncio.to_thread(c.prepare)
        c.start()
    await asyncio.sleep(seconds)
    return [await c.stop(5) for c in checks]


def test_two_processes_check_each_slot_once(tmp_path, store_url, models) -> None:
    cfg = _cfg(tmp_path, store_url, models, every=1)
    store = Store.open(store_url)
    try:
        a = DriftChecks(cfg, store, PipelineLeases(store, "host:1:a"))
        b = DriftChecks(cfg, store, PipelineLeases(store, "host:2:b"))
        assert set(a.checks) == {"leads"}  # only pipelines with scoring.drift
        stopped = asyncio.run(_run_for(2.3, a, b))
        reports = list_reports(store, pipeline="leads", limit=100)
    finally:
        store.close()
    assert stopped == [True, True]
    slots = [slot_of(r.computed_at, 1) for r in reports]
    assert 2 <= len(slots) <= 4
    assert len(set(slots)) == len(slots)  # no slot twice
    assert {r.status for r in reports} == {"insufficient"}  # nothing scored yet


def test_a_restart_within_the_slot_does_not_check_again(tmp_path, store_url, models) -> None:
    cfg = _cfg(tmp_path, store_url, models, every=3600)
    store = Store.open(store_url)
    try:
        # mid-slot, whatever the wall clock says: the restart is surely within the same hour
        t0 = slot_of(time.time(), 3600) + 1800.0
        for owner, now in (("h:1:a", t0), ("h:1:b", t0 + 600)):
            checks = DriftChecks(cfg, store, PipelineLeases(store, owner), clock=lambda n=now: n)
            asyncio.run(_run_for(0.5, checks))
        reports = list_reports(store, pipeline="leads")
        fired, _ = PipelineLeases(store, "h:1:c").snapshot()
    finally:
        store.close()
    assert len(reports) == 1
    assert fired[lease_name("leads")] == slot_of(reports[0].computed_at, 3600)
    assert "leads" not in fired or fired["leads"] is None  # the pipeline's own row is untouched


def test_serve_runs_the_drift_checks(tmp_path, models_dir) -> None:
    store_url = f"sqlite:///{tmp_path / 'junction.db'}"  # the wiring; both stores are above
    body = pipeline_yaml().replace(
        "scoring: {model: lead-score}",
        "scoring: {model: lead-score, drift: {every_s: 1, min_records: 10}}",
    )
    cfg = write_serve_config(tmp_path, store=store_url, models=models_dir, pipelines=body)
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 50, seed=9, messy=False)
    with Serve(cfg) as serve:
        ready = serve.wait_ready().wait_event("serve ready")
        drop(src, tmp_path / "inbox")
        serve.wait_event("run finished", timeout=20)
        checked = serve.wait_event("drift checked", timeout=10)
        assert serve.stop() == 0
        stopped = serve.phase("drift")
    assert ready["drift_checked"] == ["leads"]
    assert checked["pipeline"] == "leads"
    assert stopped is not None
    assert stopped["finished"] is True
