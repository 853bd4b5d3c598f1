"""Helpers for the drift tests: a model version with its reference profile, shifted leads."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from scoring.drift import build_reference, write_reference
from scoring.lead_spec import LEAD_SPEC
from scoring.registry import save_model
from scoring.spec import to_matrix
from scoring.synthetic import generate_leads
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
