"""Scoring stage: resolve the configured model in the registry (training it on first run)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from junction.core.errors import ConfigError
from junction.pipeline.config import ScoringConfig
from scoring.ab import ABScorer
from scoring.base import Scorer
from scoring.registry import ensure_default_model
from scoring.sklearn_model import SklearnLeadScorer


def resolve_model_dir(models_dir: str, cfg: ScoringConfig) -> Path:
    """Return the version folder that scores for ``cfg``: the pinned version, else production.

    Unpinned, the model's production stage decides (:func:`scoring.stages.production_version`,
    which before any promotion is the newest version neither staged nor archived).  A model
    with no version at all gets the default lead model, trained as version 1 and promoted to
    production by ``system``.

    Raises:
        ModelLoadError: the pinned version does not exist, every version is staged or archived
            with none ever promoted, or ``stages.json`` is corrupt.
    """
    from junction.core.errors import ModelLoadError
    from scoring.stages import production_version, promote, version_dir, versions

    root = Path(models_dir)
    if not uses_registry(cfg):
        return root / cfg.model  # a rules scorer has no version folder; the path is unused
    if cfg.version is not None:
        return version_dir(root, cfg.model, cfg.version)
    current = production_version(root, cfg.model)
    if current is not None:
        return version_dir(root, cfg.model, current)  # its folder may have been deleted
    if versions(root, cfg.model):
        raise ModelLoadError(
            "the model has no production version: promote one (junction model promote)",
            context={"model": cfg.model},
            code="no_production_version",
        )
    first = ensure_default_model(root, name=cfg.model)
    # the scorer verifies the folder when it loads it, right after this
    promote(root, cfg.model, first.name, actor="system", reason="first default model", verify=False)
    return first


def uses_registry(cfg: ScoringConfig) -> bool:
    """Whether the configured scorer reads versions from the model registry."""
    return cfg.scorer == "sklearn_lead"


def load_scorer(version_dir: Path, cfg: ScoringConfig) -> Scorer:
    """Load (verify and compile) the scorer stored in ``version_dir``.

    ``cfg.scorer`` names the plugin (entry point ``junction.scorers``): ``sklearn_lead`` reads
    the registry; a plugin with a ``from_config`` class method (``rules_lead``) is built from
    the scoring config alone and ignores ``version_dir``.

    With an A/B test configured (``cfg.challenger``) the challenger version of the same model
    (``version_dir``'s sibling folder) is loaded too and both are wrapped in an
    :class:`~scoring.ab.ABScorer`; a challenger that fails to load fails the pipeline, as
    production would.

    Grade thresholds: the configured ones when ``thresholds`` is set, else each loaded
    version's card's ``grade_thresholds`` (so a challenger grades by its own), else the
    default; a ``from_config`` plugin gets the configured or default ones.
    """
    production = _load_one(version_dir, cfg, "production")
    if cfg.challenger is None:
        return production
    challenger = _load_one(challenger_dir(version_dir, cfg), cfg, "challenger")
    return ABScorer(production, challenger, share=cfg.challenger.share, salt=cfg.challenger.salt)


def challenger_dir(version_dir: Path, cfg: ScoringConfig) -> Path:
    """The challenger's version folder: ``models_dir/<model>/<challenger version>``."""
    if cfg.challenger is None:
        raise ConfigError("the pipeline has no challenger configured")
    return version_dir.parent / cfg.challenger.version


def _load_one(version_dir: Path, cfg: ScoringConfig, variant: str) -> Scorer:
    if uses_registry(cfg):
        # unset thresholds: the version's own card decides (its grade_thresholds)
        return SklearnLeadScorer.load(
            version_dir, thresholds=cfg.configured_thresholds, top_k=3, variant=variant
        )
    from junction.core.registry import default_registry

    plugin = default_registry.get("scorers", cfg.scorer)
    build = getattr(plugin, "from_config", None)
    if build is None:
        raise ConfigError(
            "this scorer cannot be built from a scoring config",
            context={"scorer": cfg.scorer},
        )
    return cast(Scorer, build(cfg, variant=variant))
