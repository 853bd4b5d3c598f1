"""Score refresh: a promoted model re-scores the stored records; a second refresh is a no-op."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from junction.core.errors import ConfigError
from junction.pipeline.config import load_config
from junction.pipeline.rescore import rescore
from junction.store.repo import Store
from scoring.registry import save_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.stages import promote
from scoring.synthetic import generate_leads, write_lead_csv
from scoring.train import train_lead_model
from tests.integration.helpers import rows_of, run_once, scalar, write_config


def test_rescore_with_a_promoted_version_adds_its_scores_once(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=models
    )
    write_lead_csv(tmp_path / "inbox" / "a.csv", 300, seed=31)
    run_once(cfg)
    n_records = scalar(store_url, "SELECT COUNT(*) FROM records")
    assert n_records > 250
    assert scalar(store_url, "SELECT COUNT(DISTINCT model_version) FROM scores") == 1

    leads = generate_leads(3000, seed=77)
    trained = train_lead_model(leads, [lead["converted"] for lead in leads], seed=77, c=0.3)
    vdir = save_model(trained, models, "lead-score", training_data={"seed": 77})
    promote(models, "lead-score", vdir.name, actor="test", reason="refresh test")

    hub = load_config(cfg)
    store = Store.open(hub.store)
    try:
        seen: list[int] = []
        summary = rescore(store, hub, "leads", page=64, progress=seen.append)
        assert (summary.read, summary.scored, summary.failed) == (n_records, n_records, 0)
        assert summary.model_version == vdir.name
        assert sum(seen) == n_records
        again = rescore(store, hub, "leads")
        assert again.scored == n_records
    finally:
        store.close()

    rows = rows_of(
        store_url,
        f"SELECT s.value, s.grade, r.payload FROM scores s JOIN records r ON r.id = s.record_id "
        f"WHERE s.model_version = '{vdir.name}' ORDER BY r.id",
    )
    assert len(rows) == n_records  # once per record, although refreshed twice
    expected = SklearnLeadScorer.load(vdir).score_columns([orjson.loads(p) for _, _, p in rows])
    assert [v for v, _, _ in rows] == pytest.approx(expected.values, abs=1e-12)
    assert [g for _, g, _ in rows] == expected.grades
    assert scalar(store_url, "SELECT COUNT(*) FROM scores") == 2 * n_records  # history kept
    assert scalar(store_url, "SELECT COUNT(*) FROM deliveries") == n_records  # nothing re-sent


def test_rescore_refuses_unknown_or_unscored_pipelines(tmp_path: Path, models_dir: Path) -> None:
    cfg = write_config(
        tmp_path,
        store=f"sqlite:///{tmp_path / 'j.db'}",
        url="http://127.0.0.1:9",
        secret="s" * 32,
        models=models_dir,
    )
    hub = load_config(cfg)
    store = Store.open(hub.store)
    try:
        with pytest.raises(ConfigError, match="no such pipeline"):
            rescore(store, hub, "nope")
        unscored = hub.model_copy(
            update={
                "pipelines": {"leads": hub.pipelines["leads"].model_copy(update={"scoring": None})}
            }
        )
        with pytest.raises(ConfigError, match="does not score"):
            rescore(store, unscored, "leads")
    finally:
        store.close()


def test_rescore_command_reports_what_it_did(tmp_path: Path, models_dir: Path) -> None:
    from typer.testing import CliRunner

    from junction.cli.main import app

    store_url = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=models_dir
    )
    write_lead_csv(tmp_path / "inbox" / "a.csv", 40, seed=3)
    run_once(cfg)
    n = scalar(store_url, "SELECT COUNT(*) FROM records")
    result = CliRunner().invoke(app, ["model", "rescore", "-p", "leads", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert f"{n} of {n} records scored by lead-score v1; 0 could not be scored" in result.output
    bad = CliRunner().invoke(app, ["model", "rescore", "-p", "nope", "-c", str(cfg)])
    assert bad.exit_code == 2
    assert "no such pipeline" in bad.output
