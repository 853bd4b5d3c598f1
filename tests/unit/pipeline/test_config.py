from __future__ import annotations

from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from junction.pipeline.config import load_config

GOOD = """\
store: sqlite:///hub.db
pipelines:
  leads:
    source: {connector: csv_file, path: inbox/*.csv}
    mapping: csv.lead
    rules: ["lead.email != null"]
    routes:
      - when: "score.value >= 0.7"
        to: [webhook.sales]
      - otherwise: [webhook.nurture]
channels:
  webhook.sales: {url: "http://127.0.0.1:9/hook", secret: "${env:SALES_SECRET}"}
  webhook.nurture: {url: "http://127.0.0.1:9/n", secret: "${file:secret.txt}"}
"""


def test_valid_config_resolves_paths_and_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALES_SECRET", "whsec_abc")
    (tmp_path / "secret.txt").write_text("whsec_from_file\n")
    (tmp_path / "j.yaml").write_text(GOOD)
    cfg = load_config(tmp_path / "j.yaml")
    assert cfg.store == f"sqlite:///{tmp_path / 'hub.db'}"
    p = cfg.pipelines["leads"]
    assert p.source.connector_options()["path"] == str(tmp_path / "inbox/*.csv")
    assert p.rules[0].name == "lead.email != null"
    assert cfg.channels["webhook.sales"]["secret"] == "whsec_abc"
    assert cfg.channels["webhook.nurture"]["secret"] == "whsec_from_file"
    assert [r.targets for r in p.routes] == [["webhook.sales"], ["webhook.nurture"]]


def test_missing_env_secret_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "j.yaml").write_text(GOOD)
    with pytest.raises(ConfigError, match="SALES_SECRET is not set"):
        load_config(tmp_path / "j.yaml")


def test_errors_carry_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_SECRET", "s")
    (tmp_path / "secret.txt").write_text("x")
    bad = GOOD.replace("    mapping: csv.lead\n", "    mapping: csv.lead\n    batch_size: -1\n")
    (tmp_path / "j.yaml").write_text(bad)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "j.yaml")
    assert f"{tmp_path / 'j.yaml'}:6: pipelines.leads.batch_size" in (info.value.details or "")


def test_unknown_route_target_and_bad_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_SECRET", "s")
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "j.yaml").write_text(GOOD.replace("to: [webhook.sales]", "to: [webhook.nope]"))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "j.yaml")
    assert "webhook.nope" in (info.value.details or "")
    (tmp_path / "k.yaml").write_text("pipelines:\n  a: [\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(tmp_path / "k.yaml")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text("store: a\nstore: b\n")
    with pytest.raises(ConfigError, match="line 2: duplicate key 'store'"):
        load_config(tmp_path / "j.yaml")


def test_an_empty_value_is_null_not_a_parse_error(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text("store: sqlite:///x.db\nmodels_dir:\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "j.yaml")
    assert f"{tmp_path / 'j.yaml'}:2: models_dir" in (info.value.details or "")
