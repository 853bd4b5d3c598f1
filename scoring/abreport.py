"""A/B report: does the challenger rank outcomes better than production?

Input: per variant, the scores the variant's model gave to leads whose outcome is known (0/1).
Output per variant: n, positives, conversion rate (Wilson 95 % interval), ROC AUC with a 95 %
interval, lift at the top decile with a 95 % interval; then challenger - production for AUC and
lift, each with a 95 % interval and a two-sided p-value, and a plain verdict.

Methods (numpy and scipy.stats only):

* **AUC: DeLong.**  The AUC's variance comes from DeLong's structural components (DeLong,
  DeLong & Clarke-Pearson 1988), computed with midranks as in Sun & Xu (2014).  The two arms
  score disjoint sets of leads, so their AUCs are independent: the difference's variance is the
  sum of the two variances, and ``z = diff / se`` gives the p-value and the interval
  ``diff ± 1.96 se``.  The verdict rests on this test.
* **Lift at the top decile: seeded percentile bootstrap.**  Lift is the conversion rate among the
  top 10 % of scores over the arm's overall rate.  Each arm is resampled with replacement
  (``n_boot`` times, default 1000, ``numpy.random.default_rng(seed)``, default seed 0, so a
  report is reproducible); the 2.5 and 97.5 percentiles give the intervals, and the share of
  resampled differences on the other side of zero (doubled) gives the lift difference's p-value.
* **Too few outcomes.**  With fewer than ``min_class`` (30) positives or negatives in either arm
  the verdict is "not enough outcomes": DeLong's normal approximation is not to be trusted there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

PRODUCTION = "production"
CHALLENGER = "challenger"
MIN_CLASS = 30
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class VariantStats:
    """One arm of the test."""

    variant: str
    n: int
    positives: int
    negatives: int
    conversion: float | None
    conversion_ci: tuple[float, float] | None
    auc: float | None
    auc_ci: tuple[float, float] | None
    lift: float | None
    lift_ci: tuple[float, float] | None
    model_versions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Difference:
    """Challenger minus production for one metric."""

    metric: str
    diff: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    method: str


@dataclass(frozen=True)
class ABReport:
    """The whole report (``to_dict`` for JSON)."""

    variants: list[VariantStats]
    auc: Difference
    lift: Difference
    verdict: str
    enough: bool

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return asdict(self)


def auc_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC and its DeLong variance; needs at least one positive and one negative."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError("the AUC needs positives and negatives")
    tx = stats.rankdata(pos)
    ty = stats.rankdata(neg)
    tz = stats.rankdata(np.concatenate([pos, neg]))
    auc = float((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
    v10 = (tz[:m] - tx) / n  # per positive: share of negatives scored below it
    v01 = 1.0 - (tz[m:] - ty) / m  # per negative: share of positives scored above it
    var = (float(np.var(v10, ddof=1)) / m if m > 1 else 0.0) + (
        float(np.var(v01, ddof=1)) / n if n > 1 else 0.0
    )
    return auc, var


def lift_at(labels: np.ndarray, scores: np.ndarray, top: float = 0.1) -> float | None:
    """Conversion rate in the top ``top`` share of scores over the overall rate."""
    y = np.asarray(labels, dtype=np.float64)
    n = len(y)
    base = y.mean() if n else 0.0
    if n == 0 or base == 0.0:
        return None
    k = max(1, math.ceil(top * n))
    # a stable sort keeps the first-listed of equal scores: deterministic at the cut-off
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float(y[order].mean() / base)


def _boot_lifts(
    labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator, n_boot: int, top: float
) -> np.ndarray:
    n = len(labels)
    k = max(1, math.ceil(top * n))
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for at in range(0, n_boot, chunk):
        b = min(chunk, n_boot - at)
        idx = rng.integers(0, n, size=(b, n))
        s = scores[idx]
        y = labels[idx]
        top_idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top_rate = np.take_along_axis(y, top_idx, axis=1).mean(axis=1)
        base = y.mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[at : at + b] = np.where(base > 0, top_rate / base, np.nan)
    return out


def wilson(positives: int, n: int) -> tuple[float, float] | None:
    """Wilson 95 % interval of a proportion."""
    if n == 0:
        return None
    p = positives / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentiles(values: np.ndarray) -> tuple[float, float] | None:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return None
    lo, hi = np.percentile(v, [2.5, 97.5])
    return (float(lo), float(hi))


def ab_report(
    arms: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    model_versions: Mapping[str, Sequence[str]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    top: float = 0.1,
    min_class: int = MIN_CLASS,
) -> ABReport:
    """Compare ``arms["challenger"]`` with ``arms["production"]`` (each: labels, scores)."""
    rng = np.random.default_rng(seed)
    per: list[VariantStats] = []
    aucs: dict[str, tuple[float, float]] = {}
    boots: dict[str, np.ndarray] = {}
    enough = True
    for variant in (PRODUCTION, CHALLENGER):
        raw_y, raw_s = arms.get(variant, ((), ()))
        y = np.asarray(raw_y, dtype=np.int64)
        s = np.asarray(raw_s, dtype=np.float64)
        if len(y) != len(s):
            raise ValueError(f"{variant}: labels and scores differ in length")
        n, pos = len(y), int(y.sum())
        neg = n - pos
        if pos < min_class or neg < min_class:
            enough = False
        auc = auc_ci = None
        if pos and neg:
            auc, var = auc_delong(y, s)
            aucs[variant] = (auc, var)
            half = Z95 * math.sqrt(var)
            auc_ci = (max(0.0, auc - half), min(1.0, auc + half))
        lift = lift_at(y, s, top)
        lift_ci = None
        if lift is not None:
            boots[variant] = _boot_lifts(y.astype(np.float64), s, rng, n_boot, top)
            lift_ci = _percentiles(boots[variant])
        per.append(
            VariantStats(
                variant=variant,
                n=n,
                positives=pos,
                negatives=neg,
                conversion=pos / n if n else None,
                conversion_ci=wilson(pos, n),
                auc=auc,
                auc_ci=auc_ci,
                lift=lift,
                lift_ci=lift_ci,
                model_versions=sorted(set((model_versions or {}).get(variant, ()))),
            )
        )
    auc_diff = Difference("auc", None, None, None, "DeLong (independent arms)")
    if len(aucs) == 2:
        (a1, v1), (a0, v0) = aucs[CHALLENGER], aucs[PRODUCTION]
        d, se = a1 - a0, math.sqrt(v1 + v0)
        p = float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else (0.0 if d else 1.0)
        auc_diff = Difference("auc", d, (d - Z95 * se, d + Z95 * se), p, auc_diff.method)
    lift_diff = Difference(
        "lift_top_decile", None, None, None, f"percentile bootstrap ({n_boot}, seed {seed})"
    )
    if len(boots) == 2:
        l1, l0 = per[1].lift or 0.0, per[0].lift or 0.0  # both set: each arm was bootstrapped
        diffs = boots[CHALLENGER] - boots[PRODUCTION]
        diffs = diffs[np.isfinite(diffs)]
        p_lift = None
        if len(diffs):
            p_lift = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
        lift_diff = Difference(
            "lift_top_decile", l1 - l0, _percentiles(diffs), p_lift, lift_diff.method
        )
    return ABReport(per, auc_diff, lift_diff, _verdict(enough, auc_diff, min_class), enough)


def _verdict(enough: bool, auc: Difference, min_class: int) -> str:
    if not enough or auc.diff is None or auc.p_value is None:
        return (
            f"not enough outcomes (each variant needs {min_class} positives and "
            f"{min_class} negatives)"
        )
    if auc.p_value < 0.05:
        better = "better" if auc.diff > 0 else "worse"
        return f"challenger {better} (AUC difference significant at 95 %)"
    return "no significant difference at 95 %"


__all__ = [
    "CHALLENGER",
    "MIN_CLASS",
    "PRODUCTION",
    "ABReport",
    "Difference",
    "VariantStats",
    "ab_report",
    "auc_delong",
    "lift_at",
    "wilson",
]
