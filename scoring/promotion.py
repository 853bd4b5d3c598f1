"""The promotion gate: a candidate replaces production only if it beats it on the holdout.

:func:`gate` compares two model cards' holdout metric (``card["metrics"]["holdout"]``, written
at training time: ``roc_auc``, ``pr_auc``, ``brier``, ``lift_top_decile``); the candidate must
beat production by at least a margin (higher is better, except for ``brier``).
:func:`promote_if_better` applies it to registry versions and then promotes the candidate or
leaves it in staging (:mod:`scoring.stages`).  Forcing a promotion past the gate is
:func:`scoring.stages.promote` itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from junction.core.errors import ConfigError
from scoring.stages import implicit_production, promote, read_card, read_stages, stage

__all__ = ["HIGHER_IS_BETTER", "LOWER_IS_BETTER", "GateResult", "gate", "promote_if_better"]

HIGHER_IS_BETTER = frozenset({"roc_auc", "pr_auc", "lift_top_decile"})
LOWER_IS_BETTER = frozenset({"brier"})


@dataclass(frozen=True)
class GateResult:
    """What the promotion gate decided, and why in words."""

    passed: bool
    reason: str
    metric: str
    margin: float
    candidate: float | None
    production: float | None
    promoted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form (for the API and audit details)."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "metric": self.metric,
            "margin": self.margin,
            "candidate": self.candidate,
            "production": self.production,
            "promoted": self.promoted,
        }


def _holdout(card: Mapping[str, Any] | None, metric: str) -> float | None:
    if not card:
        return None
    metrics = card.get("metrics")
    holdout = metrics.get("holdout") if isinstance(metrics, dict) else None
    value = holdout.get(metric) if isinstance(holdout, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def gate(
    candidate_card: Mapping[str, Any],
    production_card: Mapping[str, Any] | None,
    *,
    metric: str = "roc_auc",
    margin: float = 0.005,
) -> GateResult:
    """Whether the candidate may replace production, judged on the cards' holdout ``metric``.

    It passes when there is no production card, or when the candidate's metric beats
    production's by at least ``margin`` (``>= production + margin``; for ``brier``, where lower
    is better, ``<= production - margin``).  A card without the metric fails the gate.

    Raises:
        ConfigError: ``metric`` is not a comparable holdout metric, or ``margin`` is negative.
    """
    if metric not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
        known = ", ".join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
        raise ConfigError(f"the gate metric must be one of {known}", context={"metric": metric})
    if not math.isfinite(margin) or margin < 0:
        raise ConfigError("the gate margin must be zero or more", context={"margin": margin})
    cand = _holdout(candidate_card, metric)
    prod = _holdout(production_card, metric)
    c_ver = candidate_card.get("version", "?")
    if production_card is None:
        shown = "n/a" if cand is None else f"{cand:.4f}"
        why = f"no production version: v{c_ver} ({metric} {shown}) passes"
        return GateResult(True, why, metric, margin, cand, None)
    p_ver = production_card.get("version", "?")
    if cand is None:
        return GateResult(
            False, f"v{c_ver}'s card has no holdout {metric}", metric, margin, None, prod
        )
    if prod is None:
        return GateResult(
            False, f"production v{p_ver}'s card has no holdout {metric}", metric, margin, cand, None
        )
    lower = metric in LOWER_IS_BETTER
    # a tiny epsilon: a margin met exactly must pass despite float rounding
    passed = cand <= prod - margin + 1e-12 if lower else cand >= prod + margin - 1e-12
    better = "lower" if lower else "higher"
    verdict = "passes" if passed else "fails"
    reason = (
        f"v{c_ver} {metric} {cand:.4f} vs production v{p_ver} {prod:.4f} "
        f"({cand - prod:+.4f}; needs {margin:.4f} {better}): {verdict}"
    )
    return GateResult(passed, reason, metric, margin, cand, prod)


def promote_if_better(
    models_dir: str | Path,
    name: str,
    version: str,
    *,
    actor: str,
    reason: str = "",
    metric: str = "roc_auc",
    margin: float = 0.005,
) -> GateResult:
    """Apply :func:`gate` against production; promote ``version`` or leave it in staging.

    Returns:
        The gate's result; ``promoted`` says whether production changed.

    Raises:
        ConfigError: bad ``metric`` or ``margin``, or production changed while the gate
            judged (code ``production_changed``: nothing was promoted).
        ModelLoadError: unknown version, a version that fails to load, or a corrupt
            ``stages.json``.
    """
    candidate = read_card(models_dir, name, version)
    stored = read_stages(models_dir, name)
    if stored is not None and stored.production is not None:
        current: str | None = stored.production
    else:  # before the first promotion the candidate is judged against what the hub loads
        current = implicit_production(models_dir, name, stored, exclude=version)
    if current == version:
        return GateResult(
            True, f"v{version} is already production", metric, margin, None, None, promoted=False
        )
    baseline = read_card(models_dir, name, current) if current is not None else None
    result = gate(candidate, baseline, metric=metric, margin=margin)
    if not result.passed:
        stage(models_dir, name, version, "staging", actor=actor, reason=f"gate: {result.reason}")
        return result
    why = f"{reason}; gate: {result.reason}" if reason else f"gate: {result.reason}"
    expect = stored.production if stored is not None else None
    promote(models_dir, name, version, actor=actor, reason=why, expect=expect)
    return GateResult(**{**result.__dict__, "promoted": True})
