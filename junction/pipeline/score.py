"""Scoring stage: resolve the configured model in the registry (training it on first run)."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.config import ScoringConfig
from scoring.base import Scorer
from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer


def resolve_model_dir(models_dir: str, cfg: ScoringConfig) -> Path:
    """Return the version folder ``cfg`` names; the default lead model is trained on first use."""
    root = Path(models_dir)
    if cfg.version is not None:
        return root / cfg.model / cfg.version
    return ensure_default_model(root, name=cfg.model)


def load_scorer(version_dir: Path, cfg: ScoringConfig) -> Scorer:
    """Load (verify and compile) the scorer stored in ``version_dir``."""
    return SklearnLeadScorer.load(version_dir, thresholds=cfg.thresholds, top_k=3)
