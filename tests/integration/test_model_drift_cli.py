"""`junction model drift`: latest reports, --run, --history, --json, on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from junction.cli.main import app
from junction.pipeline.hub import Hub
from tests.drift_support import drop_leads, save_version, train, write_drift_config
from tests.integration.helpers import scalar

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, ["model", "drift", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_version(root, *train(n=2000))
    return root


@pytest.fixture
def config(tmp_path: Path, models: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_drift_config(tmp_path, url, models)
    drop_leads(tmp_path, "a.csv", 500, seed=31, shift=True)
    hub = Hub.from_file(cfg)
    try:
        hub.run_once()
    finally:
        hub.close()
    return cfg


def test_drift_shows_runs_and_lists_reports(config: Path) -> None:
    empty = invoke("--config", str(config))
    assert empty.exit_code == 0, empty.output
    assert "leads: no drift reports yet" in empty.output

    ran = invoke("--config", str(config), "--run")
    assert ran.exit_code == 0, ran.output
    assert "leads: lead-score v1" in ran.output
    assert "n=500 · status alert" in ran.output
    for word in ("feature", "kind", "PSI", "KS", "page_views", "numeric", "prediction"):
        assert word in ran.output
    assert "drifted: page_views" in ran.output
    # the run alerted like the scheduled check does
    url = f"sqlite:///{config.parent / 'j.db'}"
    assert scalar(url, "SELECT count(*) FROM deliveries WHERE channel = 'file.ops'") == 1

    shown = invoke("--config", str(config), "--pipeline", "leads")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == ran.stdout.splitlines()[0]

    invoke("--config", str(config), "--run")
    history = invoke("--config", str(config), "--history", "5")
    assert history.exit_code == 0, history.output
    assert history.stdout.count("alert") == 2
    assert "max PSI" in history.output

    as_json = invoke("--config", str(config), "--json", "--history", "5")
    reports = json.loads(as_json.stdout)["leads"]
    assert len(reports) == 2
    assert reports[0]["status"] == "alert"
    assert reports[0]["worst"][0] == "page_views"
    assert {f["name"] for f in reports[0]["features"]} >= {"page_views", "lead_source"}


def test_drift_refuses_an_unknown_pipeline(config: Path) -> None:
    result = runner.invoke(app, ["model", "drift", "--config", str(config), "-p", "nope"])
    assert result.exit_code == 2
    assert "no pipeline named 'nope'" in result.output
