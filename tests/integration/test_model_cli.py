"""`junction model list|show|history|promote|rollback|card` on a real registry and store."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from junction.cli.main import app
from junction.store.audit import AuditLog
from junction.store.repo import Store
from scoring import stages
from tests.api.harness import write_api_config
from tests.registry_support import make_registry

NAME = "lead-score"
runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, ["model", *args], catch_exceptions=False)


@pytest.fixture
def reg(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions 1, 2, 3 with holdout AUC 0.70, 0.72, 0.80; the test runs in its own folder."""
    monkeypatch.chdir(tmp_path)
    return make_registry(models_dir / NAME / "1", tmp_path / "models", NAME, (0.70, 0.72, 0.80))


@pytest.fixture
def config(reg: Path, tmp_path: Path) -> Path:
    return write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=reg)


def audit_entries(config: Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    store = Store.open(f"sqlite:///{config.parent / 'j.db'}")
    try:
        rows = AuditLog(store).query(action="model.*", limit=100)
    finally:
        store.close()
    return [(r.actor, r.action, r.target, r.detail) for r in reversed(rows)]


def production(reg: Path) -> str | None:
    return stages.production_version(reg, NAME)


def test_list_shows_every_version_with_its_stage(reg: Path) -> None:
    result = invoke("list", "--models-dir", str(reg), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["version"], r["stage"], r["roc_auc"]) for r in rows] == [
        ("1", "none", "0.7000"),
        ("2", "none", "0.7200"),
        ("3", "production", "0.8000"),
    ]
    assert all(r["created_at"] and r["model_type"] for r in rows)
    table = invoke("list", "--models-dir", str(reg), "--name", NAME)
    assert table.exit_code == 0
    for text in ("version", "stage", "holdout AUC", "production", "0.8000"):
        assert text in table.stdout


def test_show_summarizes_the_production_version_by_default(reg: Path) -> None:
    result = invoke("show", NAME, "--models-dir", str(reg))
    assert result.exit_code == 0, result.output
    assert "model: lead-score v3" in result.stdout
    assert "stage: production" in result.stdout
    assert "roc_auc 0.8000" in result.stdout
    older = invoke("show", NAME, "1", "--models-dir", str(reg))
    assert "stage: none" in older.stdout


def test_promote_applies_the_gate_and_audits(config: Path, reg: Path) -> None:
    # v1 is weaker than what the hub loads now (v3): only --force gets it through
    refused = invoke("promote", NAME, "1", "--config", str(config))
    assert refused.exit_code == 1
    assert "left in staging" in refused.stderr
    assert "fails" in refused.stderr
    assert production(reg) == "3"
    assert stages.staging_version(reg, NAME) == "1"

    forced = invoke("promote", NAME, "1", "--force", "--reason", "drill", "-c", str(config))
    assert forced.exit_code == 0, forced.output
    assert "production - -> 1" in forced.stdout
    assert production(reg) == "1"

    better = invoke("promote", NAME, "2", "--margin", "0.01", "-c", str(config))
    assert better.exit_code == 0, better.output
    assert "passes" in better.stdout
    assert production(reg) == "2"

    actor = f"cli:{getpass.getuser()}"
    entries = audit_entries(config)
    assert [(a, act, t) for a, act, t, _ in entries] == [
        (actor, "model.promote_refused", "model:lead-score"),
        (actor, "model.promote", "model:lead-score"),
        (actor, "model.promote", "model:lead-score"),
    ]
    assert entries[1][3]["forced"] is True
    assert entries[2][3]["gate"]["margin"] == 0.01
    assert stages.history(reg, NAME)[-1].actor == actor


def test_rolls_back_in_one_command(config: Path, reg: Path) -> None:
    invoke("promote", NAME, "2", "--force", "-c", str(config))
    assert invoke("promote", NAME, "3", "-c", str(config)).exit_code == 0
    assert production(reg) == "3"

    result = invoke("rollback", NAME, "--reason", "v3 misbehaves", "-c", str(config))

    assert result.exit_code == 0, result.output
    assert "production 3 -> 2 (rolled back)" in result.stdout
    assert production(reg) == "2"  # what the pipelines load (tests/unit/pipeline)
    assert stages.stage_of(reg, NAME, "3") == "archived"
    _, action, target, detail = audit_entries(config)[-1]
    assert (action, target, detail["version"], detail["previous"]) == (
        "model.rollback",
        "model:lead-score",
        "2",
        "3",
    )
    history = invoke("history", NAME, "--models-dir", str(reg))
    assert "rollback" in history.stdout
    assert "v3 misbehaves" in history.stdout


def test_rollback_with_nothing_earlier_fails_clearly(reg: Path) -> None:
    result = invoke("rollback", NAME, "--models-dir", str(reg))
    assert result.exit_code == 2
    assert "no earlier production version" in result.stderr
    assert "model=lead-score" in result.stderr


def test_stage_moves_a_version_but_never_the_production_one(config: Path, reg: Path) -> None:
    assert invoke("stage", NAME, "2", "-c", str(config)).exit_code == 0
    assert stages.staging_version(reg, NAME) == "2"
    archived = invoke("stage", NAME, "1", "--to", "archived", "-r", "old", "-c", str(config))
    assert archived.stdout.strip() == "lead-score: v1 is now archived"
    assert stages.stage_of(reg, NAME, "1") == "archived"
    refused = invoke("stage", NAME, "3", "--to", "archived", "-c", str(config))
    assert refused.exit_code == 2
    assert "in production" in refused.stderr
    assert [e[1] for e in audit_entries(config)] == ["model.stage", "model.stage"]


def test_card_prints_json_or_markdown(reg: Path) -> None:
    as_json = invoke("card", NAME, "2", "--format", "json", "--models-dir", str(reg))
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["version"] == "2"
    md = invoke("card", NAME, "--models-dir", str(reg)).stdout
    assert md.startswith("# Model card: lead-score v3")
    for heading in ("## Intended use", "## Training data", "## Features", "## Metrics"):
        assert heading in md
    assert "| roc_auc | 0.8 |" in md
    assert "| stage | production |" in md


def test_card_markdown_survives_a_sparse_card(reg: Path) -> None:
    card_path = reg / NAME / "2" / "card.json"
    card_path.write_text(
        json.dumps({"name": NAME, "version": "2", "surprise": {"a|b": [1, 2]}}), encoding="utf-8"
    )
    md = invoke("card", NAME, "2", "--models-dir", str(reg))
    assert md.exit_code == 0, md.output
    assert md.stdout.count("_Not recorded in this card._") == 6
    assert "## Other" in md.stdout
    assert "a\\|b" in md.stdout
    rows = json.loads(invoke("list", "--models-dir", str(reg), "--json").stdout)
    assert rows[1]["roc_auc"] == "-"


def test_unknown_model_and_missing_registry_are_clear_errors(reg: Path) -> None:
    unknown = invoke("show", "nope", "--models-dir", str(reg))
    assert unknown.exit_code == 2
    assert "no model has this name" in unknown.stderr
    bad_version = invoke("promote", NAME, "9", "--models-dir", str(reg))
    assert bad_version.exit_code == 2
    assert "no such version" in bad_version.stderr
    nowhere = invoke("list")
    assert nowhere.exit_code == 2
    assert "--models-dir" in nowhere.stderr
