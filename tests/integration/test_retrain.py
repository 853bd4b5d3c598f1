"""Retraining from the store (SQLite and PostgreSQL): the stored leads labelled by outcomes train
a new version with production's recipe; the gate promotes or stages it; an event, an alert and
an audit entry record it; too few labelled rows write nothing."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from junction.cli.main import app
from junction.pipeline.config import HubConfig, load_config
from junction.pipeline.retrain import recently_retrained, retrain
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.events import list_events
from junction.store.outcomes import OutcomeIn, record_outcomes
from junction.store.repo import Store
from scoring import stages
from scoring.grading import grade_shares, thresholds_for_shares
from scoring.registry import save_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads
from scoring.train import TrainedModel, train_lead_model
from tests.drift_support import predict

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    scoring: {{model: lead-score, drift: {{retrain: true}}}}
channels:
  file.ops: {{folder: "{alerts}", format: jsonl}}
alerts:
  to: [file.ops]
  kinds: [model.drift, model.retrained]
"""


@pytest.fixture(scope="module")
def poor() -> tuple[TrainedModel, list[dict[str, Any]]]:
    """A version 1 that learnt nothing (shuffled labels): any real model beats it."""
    leads = generate_leads(600, 71)
    labels = [lead["converted"] for lead in leads]
    random.Random(1).shuffle(labels)
    return train_lead_model(leads, labels, seed=71), leads


@pytest.fixture(scope="module")
def good() -> tuple[TrainedModel, list[dict[str, Any]]]:
    leads = generate_leads(3000, 72)
    return train_lead_model(leads, [lead["converted"] for lead in leads], seed=72), leads


def _hub(tmp_path: Path, store_url: str, base: tuple[TrainedModel, list[dict[str, Any]]],
         **training: Any) -> HubConfig:  # fmt: skip
    models = tmp_path / "models"
    trained, leads = base
    cuts = None
    if "grade_shares" in training:
        cuts = thresholds_for_shares(predict(trained, leads), training["grade_shares"])
    extra = {} if cuts is None else {"thresholds": cuts}
    vdir = save_model(
        trained, models, "lead-score", training_data={"n": len(leads), **training}, **extra
    )
    stages.promote(models, "lead-score", vdir.name, actor="test", reason="first")
    path = tmp_path / "junction.yaml"
    path.write_text(CONFIG.format(store=store_url, models=models, alerts=tmp_path / "alerts"))
    return load_config(path)


def _seed(store: Store, n: int, seed: int, *, labelled: int | None = None) -> list[dict[str, Any]]:
    """``n`` stored leads of pipeline ``leads``; the first ``labelled`` with their outcome."""
    leads = generate_leads(n, seed)
    now = time.time()
    rows = []
    for i, lead in enumerate(leads):
        payload = {k: v for k, v in lead.items() if k != "converted"}
        rows.append(
            {
                "id": f"leads:{lead['external_id']}",
                "pipeline": "leads",
                "entity": "lead",
                "source_system": "csv",
                "source_key": lead["external_id"],
                "schema_version": "1",
                "payload": orjson.dumps(payload, default=str).decode(),
                "provenance": "{}",
                "run_id": None,
                "received_at": now + i * 1e-3,
            }
        )
    with store.begin() as conn:
        conn.execute(t.records.insert(), rows)
    items = [
        OutcomeIn(kind="converted", label=int(lead["converted"]), observed_at=now,
                  record_id=row["id"])
        for lead, row in zip(leads, rows, strict=True)
    ][: n if labelled is None else labelled]  # fmt: skip
    record_outcomes(store, items, source="test")
    return leads


def _events(store: Store) -> list[dict[str, Any]]:
    return list_events(store, kinds=["model.retrained"])


def test_a_better_model_from_the_store_is_promoted(tmp_path, store, store_url, poor) -> None:
    cfg = _hub(tmp_path, store_url, poor, grade_shares=[0.1, 0.2, 0.3], seed=71)
    base_card = stages.read_card(cfg.models_dir, "lead-score", "1")
    leads = _seed(store, 1500, seed=73)
    at = time.time()
    result = retrain(store, cfg, "leads", now=at, actor="test:drift")

    assert (result.outcome, result.version, result.base_version) == ("promoted", "2", "1")
    assert result.code is None
    assert result.n == 1500
    assert result.positives == sum(lead["converted"] for lead in leads)
    assert result.metrics["roc_auc"] > base_card["metrics"]["holdout"]["roc_auc"] + 0.05
    assert stages.production_version(cfg.models_dir, "lead-score") == "2"
    card = stages.read_card(cfg.models_dir, "lead-score", "2")
    # production's recipe, new data, thresholds from the same shares on the new holdout
    assert (card["algorithm"], card["params"]) == (base_card["algorithm"], base_card["params"])
    assert card["feature_schema_hash"] == base_card["feature_schema_hash"]
    data = card["training_data"]
    assert (data["source"], data["pipeline"], data["retrained_from"], data["trigger"]) == (
        "store",
        "leads",
        "1",
        "drift",
    )
    assert data["grade_shares"] == [0.1, 0.2, 0.3]
    cuts = tuple(card["grade_thresholds"][g] for g in "ABC")
    assert result.thresholds == cuts
    assert cuts != tuple(base_card["grade_thresholds"][g] for g in "ABC")
    scorer = SklearnLeadScorer.load(stages.version_dir(cfg.models_dir, "lead-score", "2"))
    got = grade_shares([s.value for s in scorer.score(generate_leads(2000, 74))], cuts)
    assert got["A"] == pytest.approx(0.1, abs=0.05)

    [event] = _events(store)
    assert (event["subject"], event["at"]) == ("lead-score/2", at)
    detail = event["detail"]
    assert (detail["outcome"], detail["pipeline"], detail["version"]) == ("promoted", "leads", "2")
    assert detail["gate"]["promoted"] is True
    text = json.dumps(detail)
    assert "@" not in text  # counts and versions, no lead's personal data
    assert not any(lead["last_name"] in text for lead in leads[:50])
    # the alert channel got it (alerts.kinds names model.retrained)
    with store.begin() as conn:
        kinds = [
            orjson.loads(p)["kind"]
            for (p,) in conn.execute(
                t.deliveries.select()
                .with_only_columns(t.deliveries.c.payload)
                .where(t.deliveries.c.pipeline == "_hub")
            )
        ]
    assert kinds == ["model.retrained"]
    [entry] = AuditLog(store).query(action="model.retrain", limit=10)
    assert (entry.actor, entry.target, entry.detail["outcome"]) == (
        "test:drift",
        "model:lead-score",
        "promoted",
    )
    assert recently_retrained(store, "leads", "lead-score", "1", at + 3600)
    assert not recently_retrained(store, "leads", "lead-score", "1", at + 90_000)
    assert not recently_retrained(store, "leads", "lead-score", "2", at + 3600)


def test_a_version_that_does_not_beat_production_stays_in_staging(
    tmp_path, store, store_url, good
) -> None:
    cfg = _hub(tmp_path, store_url, good, seed=72)
    _seed(store, 800, seed=75)
    result = retrain(store, cfg, "leads", margin=0.5)
    assert (result.outcome, result.version) == ("staged", "2")
    assert "fails" in result.message
    assert result.gate is not None
    assert result.gate["passed"] is False
    assert stages.production_version(cfg.models_dir, "lead-score") == "1"
    assert stages.stage_of(cfg.models_dir, "lead-score", "2") == "staging"
    # no shares in the base card: its thresholds carry over
    card = stages.read_card(cfg.models_dir, "lead-score", "2")
    assert card["grade_thresholds"] == {"A": 0.75, "B": 0.5, "C": 0.25}
    [event] = _events(store)
    assert event["detail"]["outcome"] == "staged"


def test_too_few_labelled_rows_fail_cleanly_and_write_no_version(
    tmp_path, store, store_url, good
) -> None:
    cfg = _hub(tmp_path, store_url, good)
    no_outcomes = retrain(store, cfg, "leads")
    _seed(store, 400, seed=76, labelled=120)
    few = retrain(store, cfg, "leads")
    for result in (no_outcomes, few):
        assert result.outcome == "failed"
        assert result.insufficient
        assert result.version is None
    assert "no labelled records" in no_outcomes.message
    assert few.n == 120
    assert "too few labelled records: 120" in few.message
    assert stages.versions(cfg.models_dir, "lead-score") == ["1"]
    events = _events(store)
    assert [(e["detail"]["outcome"], e["detail"]["code"]) for e in events] == [
        ("failed", "insufficient_data"),
        ("failed", "insufficient_data"),
    ]
    assert events[0]["subject"] == "lead-score/1"


def test_the_retrain_command_runs_it_by_hand(tmp_path, store, store_url, poor) -> None:
    cfg = _hub(tmp_path, store_url, poor)
    _seed(store, 1000, seed=77)
    path = str(tmp_path / "junction.yaml")
    runner = CliRunner()
    result = runner.invoke(app, ["model", "retrain", "--pipeline", "leads", "--config", path])
    assert result.exit_code == 0, result.output
    assert "lead-score v1 -> v2: promoted" in result.stdout
    assert "rows: 1000" in result.stdout
    [event] = _events(store)
    assert event["detail"]["outcome"] == "promoted"
    card = stages.read_card(cfg.models_dir, "lead-score", "2")
    assert card["training_data"]["trigger"] == "manual"
    [entry] = AuditLog(store).query(action="model.retrain", limit=10)
    assert entry.actor.startswith("cli:")

    again = runner.invoke(
        app, ["model", "retrain", "-p", "leads", "-c", path, "--margin", "0.9", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.stdout)["outcome"] == "staged"
    unknown = runner.invoke(app, ["model", "retrain", "-p", "nope", "-c", path])
    assert unknown.exit_code == 2
    assert "no pipeline named 'nope'" in unknown.stderr


def test_the_retrain_command_exits_1_when_no_version_is_written(
    tmp_path, store, store_url, good
) -> None:
    _hub(tmp_path, store_url, good)
    path = str(tmp_path / "junction.yaml")
    result = CliRunner().invoke(app, ["model", "retrain", "-p", "leads", "-c", path])
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "no labelled records" in result.stdout
