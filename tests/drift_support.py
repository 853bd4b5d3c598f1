"""Helpers for the drift tests: a model version with its reference profile, shifted leads."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from scoring.drift import (
    build_reference,
)
from scoring.drift_reference import (
    write_reference,
)
from scoring.lead_spec import LEAD_SPEC
from scoring.registry import save_model
from scoring.spec import to_matrix
from scoring.synthetic import generate_lead_csv_rows, generate_leads
from scoring.train import TrainedModel, train_lead_model

TRAIN_N = 4000
TRAIN_SEED = 11


def train(n: int = TRAIN_N, seed: int = TRAIN_SEED) -> tuple[TrainedModel, list[dict[str, Any]]]:
    """A lead model trained on ``n`` synthetic leads, and those leads."""
    leads = generate_leads(n, seed)
    return train_lead_model(leads, [lead["converted"] for lead in leads], seed=seed), leads


def predict(trained: TrainedModel, leads: list[dict[str, Any]]) -> np.ndarray:
    """The model's probabilities for ``leads`` (all valid), calibrated when the model is."""
    rows = [LEAD_SPEC.extract(lead) for lead in leads]
    return trained.artifact.predict_proba(to_matrix(LEAD_SPEC, rows))[:, 1]


def reference_of(trained: TrainedModel, leads: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference profile of the training leads."""
    cols, errors = LEAD_SPEC.extract_columns(leads)
    assert not errors
    return build_reference(LEAD_SPEC, cols, predict(trained, leads), seed=5)


def save_version(
    models_dir: Path, trained: TrainedModel, leads: list[dict[str, Any]], *, reference: bool = True
) -> Path:
    """Save ``trained`` as a new version, with its reference.json named in the card or not."""
    vdir = save_model(trained, models_dir, "lead-score", training_data={"n": len(leads)})
    card = json.loads((vdir / "card.json").read_text())
    if reference and "reference" not in card:  # the registry writes one since it can
        card["reference"] = write_reference(vdir, reference_of(trained, leads))
    elif not reference:  # a version saved before references existed
        card.pop("reference", None)
        (vdir / "reference.json").unlink(missing_ok=True)
    (vdir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return vdir


def shift_page_views(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tripled engagement: a numeric mean shift."""
    for lead in leads:
        lead["page_views"] = int(lead["page_views"]) * 3 + 4
    return leads


def shift_source_mix(leads: list[dict[str, Any]], seed: int = 3) -> list[dict[str, Any]]:
    """Half of the leads now come from referrals (a known category): a category mix change."""
    rng = random.Random(seed)
    for lead in leads:
        if rng.random() < 0.5:
            lead["lead_source"] = "referral"
    return leads


DRIFT_CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    scoring:
      model: lead-score
      version: "{version}"
      drift: {{window_s: 3600, min_records: 200, retrain: {retrain}}}
channels:
  file.ops: {{folder: "{alerts}", format: jsonl}}
alerts:
  to: [file.ops]
"""


def write_drift_config(
    tmp_path: Path, store_url: str, models: Path, version: str = "1", retrain: bool = False
) -> Path:
    """A hub config: CSV pipeline ``leads`` scored by ``version`` with drift checks, alerts to
    ``file.ops`` (a JSONL file channel)."""
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "junction.yaml"
    path.write_text(
        DRIFT_CONFIG.format(
            store=store_url,
            models=models,
            version=version,
            retrain=str(retrain).lower(),
            alerts=tmp_path / "alerts",
        )
    )
    return path


def drop_leads(tmp_path: Path, name: str, n: int, seed: int, *, shift: bool = False) -> None:
    """Write ``n`` synthetic leads as CSV into ``tmp_path/inbox`` (page views tripled: shift)."""
    rows = list(generate_lead_csv_rows(n, seed, messy=False))
    if shift:  # engagement tripled: a numeric mean shift
        for row in rows:
            row["page_views"] = str(int(row["page_views"]) * 3 + 4)
    with (tmp_path / "inbox" / name).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
