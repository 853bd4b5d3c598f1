"""`junction model train` end to end: CSV files and the store in, scorable registry versions out."""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from junction.cli.main import app
from junction.cli.model_train import parse_params
from junction.store.audit import AuditLog
from junction.store.outcomes import OutcomeIn, record_outcomes
from junction.store.repo import Store
from scoring import stages
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_lead_csv_rows, generate_leads
from tests.integration.helpers import rows_of, run_once, write_config

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, ["model", "train", *args], catch_exceptions=False)


def lead_csv(path: Path, n: int, seed: int) -> Path:
    """A CRM lead export with its conversion label (``converted``: true/false)."""
    leads = generate_leads(n, seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer: Any = None
        for lead, row in zip(leads, generate_lead_csv_rows(n, seed, messy=False), strict=True):
            row = {**row, "converted": "true" if lead["converted"] else "false"}
            if writer is None:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
    return path


def card_of(version_dir: Path) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((version_dir / "card.json").read_text())
    return card


def saved(result: Result) -> Path:
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("saved "))
    return Path(line.removeprefix("saved "))


def test_a_lead_csv_trains_a_scorable_version_and_the_gate_decides_its_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = lead_csv(tmp_path / "leads.csv", 2000, seed=5)
    models = tmp_path / "models"

    first = invoke("--csv", str(data), "--models-dir", str(models), "--cv", "3")
    v1 = saved(first)
    assert v1 == models / "lead-score" / "1"
    assert "roc_auc" in first.stdout
    assert "cv roc_auc (3-fold)" in first.stdout
    assert "stage: production" in first.stdout  # no production yet: the gate passes
    card = card_of(v1)
    assert card["algorithm"] == "logistic_regression"
    assert card["calibration"]["method"] == "none"
    assert card["training_data"]["source"] == "csv"
    assert card["training_data"]["split"] == "time"  # created_at is in the export
    assert card["training_data"]["n"] == 2000
    assert card["training_data"]["label"]["column"] == "converted"
    cv = card["training_data"]["cv"]
    assert cv["k"] == 3
    assert len(cv["folds"]) == 3
    assert card["metrics"]["holdout"]["roc_auc"] > 0.6

    scorer = SklearnLeadScorer.load(v1)
    fresh = generate_leads(200, seed=99)
    scores = scorer.score(fresh)
    assert len(scores) == 200
    assert all(0.0 < s.value < 1.0 for s in scores)
    assert len({round(s.value, 6) for s in scores}) > 50

    # --no-promote stages the new version; production stays
    v2 = saved(invoke("--csv", str(data), "--models-dir", str(models), "--no-promote"))
    assert stages.production_version(models, "lead-score") == "1"
    assert stages.staging_version(models, "lead-score") == v2.name
    # the gate: the same data and seed cannot beat production by a whole AUC point
    third = invoke("--csv", str(data), "--models-dir", str(models), "--margin", "0.01")
    v3 = saved(third)
    assert "stage: staging (gate:" in third.stdout
    assert stages.staging_version(models, "lead-score") == v3.name
    assert stages.production_version(models, "lead-score") == "1"


def write_tabular(tmp_path: Path, encoding: str, n: int = 1500) -> tuple[Path, Path]:
    """A ';'-delimited, quoted file with Cyrillic categories and its tabular spec."""
    rng = random.Random(7)
    lines = ['"Город";"визиты";"длительность";"подписка"']
    for _ in range(n):
        city = rng.choice(["Москва", "Казань", "Омск"])
        visits = rng.randint(0, 12)
        logit = -2.0 + 0.35 * visits + {"Москва": 0.8, "Казань": 0.0, "Омск": -0.8}[city]
        yes = rng.random() < 1 / (1 + math.exp(-logit))
        lines.append(f'"{city}";"{visits}";"{rng.randint(0, 900)}";"{"да" if yes else "нет"}"')
    data = tmp_path / f"deals-{encoding}.csv"
    data.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    spec = tmp_path / "deals.yaml"
    spec.write_text(
        "spec: tabular.v1\n"
        "name: deals\n"
        "features:\n"
        "  - {name: city, kind: categorical, source: Город}\n"
        "  - {name: visits, kind: numeric, source: визиты, transform: log1p}\n"
        "label: {field: подписка, positive: [да], negative: [нет]}\n"
        "exclude: [длительность]\n",
        encoding="utf-8",
    )
    return data, spec


@pytest.mark.parametrize("encoding", ["cp1251", "utf-8-sig"], ids=["cp1251", "utf8-bom"])
def test_a_tabular_spec_trains_on_a_semicolon_file_in_any_encoding(
    tmp_path: Path, encoding: str
) -> None:
    pytest.importorskip("scoring.trees")
    data, spec = write_tabular(tmp_path, encoding)
    models = tmp_path / "models"
    result = invoke(
        "--csv", str(data), "--spec", str(spec), "--models-dir", str(models),
        "--algorithm", "hgb", "--param", "max_iter=50",
    )  # fmt: skip
    version = saved(result)
    assert version == models / "deals" / "1"
    card = card_of(version)
    assert card["algorithm"] == "hist_gradient_boosting"
    assert card["calibration"]["method"] == "sigmoid"  # the default for hgb
    assert card["params"] == {"max_iter": 50}
    assert card["training_data"]["n"] == 1500
    assert card["metrics"]["holdout"]["roc_auc"] > 0.7
    scorer = SklearnLeadScorer.load(version)
    hot, cold = scorer.score(
        [{"Город": "Москва", "визиты": "12"}, {"Город": "Омск", "визиты": "0"}]
    )
    assert hot.value > cold.value


def test_a_time_column_splits_by_time_and_bad_times_are_reported(tmp_path: Path) -> None:
    data, spec = write_tabular(tmp_path, "utf-8", n=600)
    lines = data.read_text(encoding="utf-8").splitlines()
    stamped = [lines[0] + ';"when"'] + [
        f'{line};"2026-{1 + i // 60:02d}-{1 + i % 28:02d}T09:00:00Z"'
        for i, line in enumerate(lines[1:])
    ]
    data.write_text("\n".join(stamped) + "\n", encoding="utf-8")
    models = str(tmp_path / "m")
    base = ("--csv", str(data), "--spec", str(spec), "--models-dir", models)
    card = card_of(saved(invoke(*base, "--time-column", "when")))
    assert card["training_data"]["split"] == "time"
    assert card["training_data"]["time_column"] == "when"
    assert card["training_data"]["window"]["holdout_to"] == "2026-10-28T09:00:00Z"

    stamped[5] = stamped[5].replace("2026-01-05T09:00:00Z", "05/01/2026")
    data.write_text("\n".join(stamped) + "\n", encoding="utf-8")
    result = invoke(*base, "--time-column", "when")
    assert card_of(saved(result))["training_data"]["split"] == "random"
    assert "not ISO 8601: the split is random" in result.stderr


def test_tuning_runs_through_the_command_and_lands_in_the_card(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    data, spec = write_tabular(tmp_path, "utf-8", n=800)
    result = invoke(
        "--csv", str(data), "--spec", str(spec), "--models-dir", str(tmp_path / "m"),
        "--tune", "3", "--cv", "3", "--seed", "4",
    )  # fmt: skip
    card = card_of(saved(result))
    tuning = card["training_data"]["tuning"]
    assert tuning["trials"] == 3
    assert tuning["seed"] == 4
    assert card["params"] == tuning["best_params"]
    assert set(card["params"]) == {"c"}
    assert card["training_data"]["cv"]["mean"] == pytest.approx(tuning["best_cv_mean"])


def test_params_are_typed_and_c_is_case_insensitive() -> None:
    assert parse_params(
        ["C=0.03", "max_iter=50", "early_stopping=false", "class_weight=balanced"]
    ) == {
        "c": 0.03,
        "max_iter": 50,
        "early_stopping": False,
        "class_weight": "balanced",
    }
    assert parse_params(["max_depth=none"]) == {"max_depth": None}


def test_data_problems_exit_2_with_the_fix(tmp_path: Path) -> None:
    data, spec = write_tabular(tmp_path, "utf-8", n=50)
    models = str(tmp_path / "m")
    result = invoke(
        "--csv", str(data), "--spec", str(spec), "--models-dir", models,
        "--label-column", "missing",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no label column 'missing': pass --label-column" in result.stderr
    result = invoke(
        "--csv", str(data), "--spec", str(spec), "--models-dir", models, "--positive", "oui"
    )
    assert result.exit_code == 2
    assert "no positive rows" in result.stderr
    assert "values: да, нет" in result.stderr
    both = invoke("--csv", str(data), "--pipeline", "leads", "--models-dir", models)
    assert both.exit_code == 2
    assert "exactly one of --csv" in both.stderr
    bad = invoke("--csv", str(data), "--spec", str(spec), "--models-dir", models, "--param", "x")
    assert bad.exit_code == 2
    assert "KEY=VALUE" in bad.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").rglob("card.json"))


def test_the_store_s_records_labelled_by_outcomes_train_a_model(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret="s" * 32, models=models_dir
    )
    from scoring.synthetic import write_lead_csv

    write_lead_csv(tmp_path / "inbox" / "a.csv", 1200, seed=41, messy=False)
    run_once(cfg)
    converted = {lead["external_id"]: lead["converted"] for lead in generate_leads(1200, 41)}
    stored = rows_of(store_url, "SELECT id, payload FROM records WHERE pipeline = 'leads'")
    assert len(stored) > 1000
    items = [
        OutcomeIn(
            kind="converted",
            label=converted[orjson.loads(payload)["external_id"]],
            observed_at=time.time(),
            record_id=rid,
        )
        for rid, payload in stored
    ]
    store = Store.open(store_url)
    try:
        record_outcomes(store, items[:-100], source="test")  # 100 leads have no outcome yet
    finally:
        store.close()

    models = tmp_path / "trained"
    result = invoke(
        "--pipeline", "leads", "--config", str(cfg), "--models-dir", str(models), "--cv", "3"
    )
    version = saved(result)
    card = card_of(version)
    data = card["training_data"]
    assert (data["source"], data["pipeline"], data["outcome_kind"]) == (
        "store",
        "leads",
        "converted",
    )
    assert data["n"] == len(stored) - 100
    assert data["positives"] == sum(i.label for i in items[:-100])
    assert data["split"] == "time"  # the canonical leads carry created_at
    assert card["metrics"]["holdout"]["roc_auc"] > 0.6
    SklearnLeadScorer.load(version).score(generate_leads(10, seed=3))
    store = Store.open(store_url)
    try:
        audited = AuditLog(store).query(action="model.*", limit=10)
    finally:
        store.close()
    assert [(a.action, a.target, a.detail["version"]) for a in audited] == [
        ("model.promote", "model:lead-score", version.name)
    ]

    nothing = invoke(
        "--pipeline", "leads", "--config", str(cfg), "--models-dir", str(models),
        "--kind", "won",
    )  # fmt: skip
    assert nothing.exit_code == 2
    assert "no labelled records" in nothing.stderr
    unknown = invoke("--pipeline", "nope", "--config", str(cfg), "--models-dir", str(models))
    assert unknown.exit_code == 2
    assert "no pipeline 'nope'" in unknown.stderr


def test_xgboost_trains_calibrated_from_the_cli(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    data, spec = write_tabular(tmp_path, "utf-8")
    models = tmp_path / "models"
    result = invoke(
        "--csv", str(data), "--spec", str(spec), "--models-dir", str(models),
        "--algorithm", "xgb", "--param", "n_estimators=60",
    )  # fmt: skip
    version = saved(result)
    card = card_of(version)
    assert card["algorithm"] == "xgboost"
    assert card["calibration"]["method"] == "sigmoid"  # boosted: sigmoid by default
    assert (version / card["booster"]["file"]).is_file()
    assert card["metrics"]["holdout"]["roc_auc"] > 0.7
    hot, cold = SklearnLeadScorer.load(version).score(
        [{"Город": "Москва", "визиты": "12"}, {"Город": "Омск", "визиты": "0"}]
    )
    assert hot.value > cold.value
