"""Scoring stage: load the configured model from the registry (training it on first run)."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.config import ScoringConfig
from scoring.base import Scorer
from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer


def load_scorer(models_dir: str, cfg: ScoringConfig) -> Scorer:
    """Return the scorer for ``cfg``; the default lead model is trained on first use."""
    root = Path(models_dir)
    if cfg.version is not None:
        version_dir = root / cfg.model / cfg.version
    else:
        version_dir = ensure_default_model(root, name=cfg.model)
    return SklearnLeadScorer.load(version_dir, thresholds=cfg.thresholds, top_k=3)
