"""A pipeline scored by the rules fallback: no models, no training, rules beside the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, run_once, scalar, write_config

RULES = """\
base: 10
scale: {kind: linear, max: 100}
rules:
  - {id: c_level, feature: seniority, op: "==", value: c_level, points: 60}
  - {id: referral, feature: lead_source, op: "==", value: referral, points: 30}
"""


def test_rules_scorer_needs_no_model_registry(tmp_path: Path, store_url: str) -> None:
    models = tmp_path / "models"
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=models
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "leads.yaml").write_text(RULES)
    text = cfg.read_text().replace(
        "scoring: {model: lead-score}",
        "scoring: {model: lead-score, scorer: rules_lead, rules: rules/leads.yaml}",
    )
    cfg.write_text(text)
    write_lead_csv(tmp_path / "inbox" / "a.csv", 200, seed=5)
    run_once(cfg)
    n = scalar(store_url, "SELECT COUNT(*) FROM records")
    assert n > 150
    assert rows_of(store_url, "SELECT DISTINCT model FROM scores") == [("rules",)]
    values = [v for (v,) in rows_of(store_url, "SELECT value FROM scores")]
    assert set(values) <= {0.1, 0.4, 0.7, 1.0}  # base 10 + 0/30/60/90 points, over 100
    assert len(set(values)) > 1
    assert not models.exists()  # nothing trained, nothing written


def test_a_missing_rules_file_fails_the_pipeline_with_a_config_error(
    tmp_path: Path, store_url: str
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=tmp_path
    )
    cfg.write_text(
        cfg.read_text().replace(
            "scoring: {model: lead-score}",
            "scoring: {model: lead-score, scorer: rules_lead, rules: nowhere.yaml}",
        )
    )
    write_lead_csv(tmp_path / "inbox" / "a.csv", 10, seed=5)
    with pytest.raises(ConfigError, match="rules"):
        run_once(cfg)
