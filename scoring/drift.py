"""Drift of a model's inputs and predictions against its training reference (PSI and KS).

A model version keeps a **reference profile** of its training data (:func:`build_reference`,
saved as ``reference.json`` beside ``card.json``, its sha256 in ``card["reference"]``):

* per numeric feature: quantile bin edges (10 bins by the training deciles, duplicates merged,
  the outer bins open-ended), the training share of each bin, and a sorted seeded sample of at
  most 2,000 values for the KS test;
* per categorical feature: the share of its 50 most frequent categories, the rest pooled in
  ``__other__``;
* per binary feature: the rate of 1s;
* the predictions: bins over [0, 1] by the training deciles of the predicted probability, with
  a sample, exactly like a numeric feature.

:func:`compare` measures a window of scored records against it:

* **PSI** (population stability index) per feature: ``sum((a - e) * ln(a / e))`` over the bins,
  ``e`` the reference share and ``a`` the window's.  An empty bin would make the logarithm
  infinite, so a share below ``EPS`` (1e-4) counts as ``EPS`` on both sides: a bin empty in
  both contributes 0, and a bin empty on one side contributes a large but finite term.
  Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift (warn), >= 0.25 shift (alert).
* **KS**: the two-sample Kolmogorov-Smirnov statistic (the largest gap between the empirical
  distribution functions) of each numeric feature and of the predictions against the stored
  sample, with its asymptotic p-value.
* **Sampling noise does not alert.**  On a small window a resample of the very training data
  reaches a PSI of 0.1 by chance (``n * PSI`` is roughly chi-squared with ``bins - 1`` degrees
  of freedom: ~9 / n on average for 10 bins).  So a threshold counts only when the statistic
  is also significant: PSI above the chi-squared quantile over the effective sample size, KS
  with a p-value below the level.  The level is ``SIGNIFICANCE`` (0.1 %) for the whole report,
  split evenly over its tests (Bonferroni: ~0.1 % / 20 for the lead model), so noise alone
  flags about one report in a thousand.  The report keeps the PSI bound as ``psi_noise``.
  Bins expected to hold fewer than 5 of the window's records are pooled first
  (:func:`pooled`), as for a chi-squared test.

A feature is ``alert`` when its PSI reaches ``psi_alert`` or its KS ``ks_alert`` (significant),
``warn`` when its PSI reaches ``psi_warn`` (significant), else ``ok``; the report's status is the
worst of its features and the predictions, or ``insufficient`` when the window has fewer than
``min_records`` records (nothing is compared then).

Values within ``TIE_TOLERANCE`` (1e-9, relative) of each other count as ties, in the bins and in
KS: the same value computed two ways (``math.log1p`` for the reference, ``np.log1p`` in a batch)
may differ in the last bit, which on discrete data would move a whole point mass across a bin
edge or a KS step.

Pure numpy: nothing here imports scikit-learn or scipy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import InternalError, ModelLoadError
from scoring.drift_reference import FORMAT, check_reference
from scoring.spec import FeatureColumns, FeatureSpec

FloatArray = npt.NDArray[np.float64]

OTHER = "__other__"
EPS = 1e-4
N_BINS = 10
SAMPLE_SIZE = 2_000
TOP_CATEGORIES = 50
SIGNIFICANCE = 0.001
TOP_WORST = 5
TIE_TOLERANCE = 1e-9
MIN_EXPECTED = 5.0  # records a bin must expect in the window to stand on its own

OK, WARN, ALERT, INSUFFICIENT, NO_REFERENCE = "ok", "warn", "alert", "insufficient", "no_reference"
_SEVERITY = {OK: 0, WARN: 1, ALERT: 2}


# reference profile


def _finite(values: Any) -> FloatArray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def _up(x: Any) -> FloatArray:
    """``x`` raised by ``TIE_TOLERANCE`` (relative; absolute below 1): where ties end.

    Two computations of one value may differ in the last bit (``math.log1p(2)`` and
    ``np.log1p(2)`` do: the reference comes from one path, a window from another).  On discrete
    data a bin edge or a KS step sits exactly on such a value, and a one-bit difference would
    move its whole point mass across; so values within the tolerance count as equal.
    """
    v = np.asarray(x, dtype=np.float64)
    return v + TIE_TOLERANCE * np.maximum(1.0, np.abs(v))


def _bin_counts(x: FloatArray, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Counts per bin: ``x <= e0``, ``e0 < x <= e1``, ..., ``x > e_last`` (ties: see ``_up``)."""
    idx = np.searchsorted(_up(edges), x, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)


def _sample(x: FloatArray, size: int, rng: np.random.Generator) -> list[float]:
    if len(x) > size:
        x = rng.choice(x, size=size, replace=False)
    return [float(v) for v in np.sort(x)]


def numeric_profile(
    values: Any, *, bins: int = N_BINS, sample_size: int = SAMPLE_SIZE, seed: int = 0
) -> dict[str, Any]:
    """The bins, bin shares and sorted sample of one numeric column (non-finite values left out)."""
    x = _finite(values)
    if len(x) == 0:
        return {"n": 0, "edges": [], "proportions": [1.0], "sample": [], "mean": None}
    qs = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = [float(e) for e in np.unique(qs)]
    counts = _bin_counts(x, edges)
    return {
        "n": len(x),
        "edges": edges,
        "proportions": (counts / len(x)).tolist(),
        "sample": _sample(x, sample_size, np.random.default_rng(seed)),
        "mean": float(x.mean()),
    }


def categorical_profile(values: Sequence[str], *, top: int = TOP_CATEGORIES) -> dict[str, Any]:
    """The shares of the ``top`` most frequent categories, the rest pooled in ``__other__``."""
    counts = Counter(values)
    n = len(values)
    # most frequent first, ties by name: the same data always gives the same profile
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:top]
    other = n - sum(c for _, c in kept)
    shares = {str(k): c / n for k, c in kept} if n else {}
    shares[OTHER] = other / n if n else 0.0
    return {"n": n, "proportions": shares}


def build_reference(
    spec: FeatureSpec,
    cols: FeatureColumns,
    proba: Any,
    *,
    seed: int = 0,
    bins: int = N_BINS,
    sample_size: int = SAMPLE_SIZE,
    top_categories: int = TOP_CATEGORIES,
) -> dict[str, Any]:
    """The JSON-ready reference profile of the training data ``cols`` and its predictions.

    Args:
        spec: the model's feature spec (``cols`` follows its order).
        cols: the training features.
        proba: the model's predicted probability for each column of ``cols``.
        seed: seeds the KS samples (the same data and seed give the same profile).
    """
    p = np.asarray(proba, dtype=np.float64).ravel()
    n = cols.numeric.shape[1] if len(spec.numeric) else len(p)
    return {
        "format": FORMAT,
        "spec": spec.to_dict(),
        "schema_hash": spec.schema_hash,
        "n": int(n),
        "seed": seed,
        "eps": EPS,
        "numeric": [
            {"name": name}
            | numeric_profile(cols.numeric[i], bins=bins, sample_size=sample_size, seed=seed + i)
            for i, name in enumerate(spec.numeric)
        ],
        "categorical": [
            {"name": name} | categorical_profile(cols.categorical[i], top=top_categories)
            for i, name in enumerate(spec.categorical)
        ],
        "binary": [
            {"name": name, "n": int(cols.binary.shape[1]), "rate": _rate(cols.binary[i])}
            for i, name in enumerate(spec.binary)
        ],
        "prediction": numeric_profile(
            p, bins=bins, sample_size=sample_size, seed=seed + len(spec.numeric)
        ),
    }


def _rate(values: Any) -> float:
    x = _finite(values)
    return float((x > 0.5).mean()) if len(x) else 0.0


# statistics


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """The population stability index of ``actual`` shares against ``expected`` shares.

    Shares below ``EPS`` count as ``EPS`` (see the module docstring).
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(sample_a: FloatArray, sample_b: FloatArray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (ties, within ``TIE_TOLERANCE``, handled)."""
    a, b = np.sort(sample_a), np.sort(sample_b)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    points = _up(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """The asymptotic p-value of KS statistic ``d`` for samples of ``n`` and ``m`` values.

    Kolmogorov's limit distribution with Stephens' small-sample correction (as in Numerical
    Recipes); conservative when the data have ties.
    """
    if n == 0 or m == 0 or d <= 0.0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0
    j = np.arange(1, 101, dtype=np.float64)
    terms = 2.0 * (-1.0) ** (j - 1) * np.exp(-2.0 * j * j * lam * lam)
    return float(min(1.0, max(0.0, terms.sum())))


def chi2_quantile(df: int, alpha: float = SIGNIFICANCE) -> float:
    """The chi-squared quantile at ``1 - alpha`` (Wilson-Hilferty; a few % accurate)."""
    if df <= 0:
        return 0.0
    h = 2.0 / (9.0 * df)
    z = NormalDist().inv_cdf(1.0 - alpha)
    return float(df * (1.0 - h + z * math.sqrt(h)) ** 3)


def psi_noise(n_bins: int, n: int, n_reference: int, alpha: float = SIGNIFICANCE) -> float:
    """The PSI that sampling noise alone exceeds with probability ``alpha``.

    ``n_eff * PSI`` is about chi-squared with ``n_bins - 1`` degrees of freedom when both
    sides are samples of one distribution (``n_eff = 1 / (1/n + 1/n_reference)``).
    """
    if n <= 0:
        return math.inf
    inv = 1.0 / n + (1.0 / n_reference if n_reference > 0 else 0.0)
    return chi2_quantile(n_bins - 1, alpha) * inv


# the report


@dataclass
class FeatureDrift:
    """The drift of one feature (or of the predictions, ``kind="prediction"``)."""

    name: str
    kind: str  # numeric | categorical | binary | prediction
    psi: float
    psi_noise: float
    ks: float | None = None
    ks_p: float | None = None
    status: str = OK
    mean_ref: float | None = None
    mean_now: float | None = None


@dataclass
class DriftReport:
    """The result of one drift check.

    ``status`` is ``ok``, ``warn``, ``alert``, ``insufficient`` (fewer than ``min_records``
    records: nothing compared) or ``no_reference`` (the model version has no usable reference;
    ``reason`` says why).  ``worst`` names up to five features, worst status first, then by
    PSI.  The job fills in the model, pipeline and window.
    """

    status: str
    n: int
    n_reference: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    worst: list[str] = field(default_factory=list)
    max_psi: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    pipeline: str | None = None
    model: str | None = None
    model_version: str | None = None
    window_start: float | None = None
    window_end: float | None = None
    computed_at: float | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``drift_reports.report`` column)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftReport:
        """Rebuild a report from :meth:`to_dict` output."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        features = [FeatureDrift(**f) for f in known.pop("features", []) or []]
        pred = known.pop("prediction", None)
        return cls(
            **known,
            features=features,
            prediction=FeatureDrift(**pred) if isinstance(pred, Mapping) else None,
        )

    def all_features(self) -> list[FeatureDrift]:
        """The features, then the predictions."""
        return [*self.features, *([self.prediction] if self.prediction else [])]


def _status(
    psi_value: float,
    noise: float,
    ks: float | None,
    ks_p: float | None,
    *,
    psi_warn: float,
    psi_alert: float,
    ks_alert: float,
    alpha: float,
) -> str:
    psi_counts = psi_value > noise
    ks_counts = ks is not None and ks_p is not None and ks >= ks_alert and ks_p < alpha
    if (psi_counts and psi_value >= psi_alert) or ks_counts:
        return ALERT
    if psi_counts and psi_value >= psi_warn:
        return WARN
    return OK


def pooled(expected: FloatArray, actual: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Pool the bins that expect fewer than ``MIN_EXPECTED`` of ``n`` records.

    PSI, like the chi-squared test it approximates, misreads bins expected to hold a record or
    two: a rare category that happens to be absent from a small window scores
    ``e * ln(e / EPS)``, several times what its share warrants.  So, as for a chi-squared test,
    the rare bins are pooled, and while the pool still expects fewer than ``MIN_EXPECTED``
    records the smallest other bins join it; at least two bins always remain.  E.g. a window of
    200 leads pools the countries under 2.5 % with the smallest common one, while a window of
    20,000 keeps them all apart.  A surge of new or rare categories still shows in the pool.
    """
    k = len(expected)
    if k <= 2:
        return expected, actual
    order = np.argsort(expected, kind="stable")  # smallest first
    expect = expected[order] * n
    take = int(np.count_nonzero(expect < MIN_EXPECTED))  # every rare bin
    while take < k and expect[:take].sum() < MIN_EXPECTED:  # grow the pool until it counts
        take += 1
    take = min(take, k - 1)
    if take < 2:
        return expected, actual
    pool, keep = order[:take], np.sort(order[take:])  # the kept bins in their order
    return (
        np.append(expected[keep], expected[pool].sum()),
        np.append(actual[keep], actual[pool].sum()),
    )


def _psi_noise(
    expected: FloatArray, actual: FloatArray, n: int, n_reference: int, alpha: float
) -> tuple[float, float]:
    e, a = pooled(expected, actual, n)
    used = int(np.count_nonzero((e > 0) | (a > 0)))
    return psi(e, a), psi_noise(used, n, n_reference, alpha)


def _numeric_drift(
    name: str, kind: str, profile: Mapping[str, Any], values: Any, n_reference: int, alpha: float
) -> FeatureDrift:
    x = _finite(values)
    edges = profile["edges"]
    counts = _bin_counts(x, edges)
    actual = counts / len(x) if len(x) else np.zeros(len(edges) + 1)
    expected = np.asarray(profile["proportions"], dtype=np.float64)
    value, noise = _psi_noise(expected, actual, len(x), int(profile.get("n") or n_reference), alpha)
    sample = np.asarray(profile["sample"], dtype=np.float64)
    ks = ks_statistic(sample, x)
    out = FeatureDrift(
        name=name,
        kind=kind,
        psi=value,
        psi_noise=noise,
        ks=ks,
        ks_p=ks_pvalue(ks, len(sample), len(x)),
        mean_ref=profile.get("mean"),
        mean_now=float(x.mean()) if len(x) else None,
    )
    return out


def _categorical_drift(
    name: str, profile: Mapping[str, Any], values: Sequence[str], n_reference: int, alpha: float
) -> FeatureDrift:
    shares: dict[str, float] = dict(profile["proportions"])
    shares.setdefault(OTHER, 0.0)
    counts = dict.fromkeys(shares, 0)
    for v, c in Counter(values).items():
        key = v if v in counts and v != OTHER else OTHER
        counts[key] += c
    n = len(values)
    keys = list(shares)
    expected = np.array([shares[k] for k in keys], dtype=np.float64)
    actual = np.array([counts[k] / n if n else 0.0 for k in keys], dtype=np.float64)
    value, noise = _psi_noise(expected, actual, n, int(profile.get("n") or n_reference), alpha)
    return FeatureDrift(name=name, kind="categorical", psi=value, psi_noise=noise)


def _binary_drift(
    name: str, profile: Mapping[str, Any], values: Any, n_reference: int, alpha: float
) -> FeatureDrift:
    x = _finite(values)
    rate_ref = float(profile["rate"])
    rate = float((x > 0.5).mean()) if len(x) else 0.0
    expected = np.array([1.0 - rate_ref, rate_ref])
    actual = np.array([1.0 - rate, rate])
    value, noise = _psi_noise(expected, actual, len(x), int(profile.get("n") or n_reference), alpha)
    return FeatureDrift(
        name=name,
        kind="binary",
        psi=value,
        psi_noise=noise,
        mean_ref=rate_ref,
        mean_now=rate,
    )


def compare(
    reference: Mapping[str, Any],
    cols: FeatureColumns,
    proba: Any,
    *,
    psi_warn: float = 0.1,
    psi_alert: float = 0.25,
    ks_alert: float = 0.15,
    min_records: int = 200,
) -> DriftReport:
    """Compare a window's features ``cols`` and predictions ``proba`` with ``reference``.

    ``cols`` must follow the reference's feature order (the model's spec).

    Raises:
        ModelLoadError: ``reference`` is malformed or names other features than ``cols`` has.
        InternalError: ``proba`` does not hold one value per column of ``cols``.
    """
    check_reference(reference)
    p = np.asarray(proba, dtype=np.float64).ravel()
    n = int(cols.numeric.shape[1]) if cols.numeric.shape[0] else len(p)
    # Bonferroni: SIGNIFICANCE bounds the chance that noise flags anything in the report
    n_psi = len(reference["categorical"]) + len(reference["numeric"]) + len(reference["binary"])
    alpha = SIGNIFICANCE / (n_psi + 1 + len(reference["numeric"]) + 1)
    thresholds = {
        "psi_warn": psi_warn,
        "psi_alert": psi_alert,
        "ks_alert": ks_alert,
        "min_records": float(min_records),
        "significance": SIGNIFICANCE,
        "alpha_per_test": alpha,
    }
    if len(p) != n:
        raise InternalError(
            "drift: one prediction per feature column is required",
            context={"features": n, "predictions": len(p)},
        )
    n_ref = int(reference["n"])
    report = DriftReport(status=INSUFFICIENT, n=n, n_reference=n_ref, thresholds=thresholds)
    shapes = (
        len(reference["numeric"]) == cols.numeric.shape[0]
        and len(reference["categorical"]) == len(cols.categorical)
        and len(reference["binary"]) == cols.binary.shape[0]
    )
    if not shapes:
        raise ModelLoadError("the drift reference names other features than the model computes")
    if n < min_records:
        return report
    features: list[FeatureDrift] = []
    for prof, values in zip(reference["categorical"], cols.categorical, strict=True):
        features.append(_categorical_drift(prof["name"], prof, values, n_ref, alpha))
    for i, prof in enumerate(reference["numeric"]):
        features.append(
            _numeric_drift(prof["name"], "numeric", prof, cols.numeric[i], n_ref, alpha)
        )
    for i, prof in enumerate(reference["binary"]):
        features.append(_binary_drift(prof["name"], prof, cols.binary[i], n_ref, alpha))
    prediction = _numeric_drift(
        "prediction", "prediction", reference["prediction"], p, n_ref, alpha
    )
    for f in [*features, prediction]:
        f.status = _status(
            f.psi,
            f.psi_noise,
            f.ks,
            f.ks_p,
            psi_warn=psi_warn,
            psi_alert=psi_alert,
            ks_alert=ks_alert,
            alpha=alpha,
        )
    everything = [*features, prediction]
    report.features = features
    report.prediction = prediction
    report.max_psi = max(f.psi for f in everything)
    report.status = max((f.status for f in everything), key=_SEVERITY.__getitem__)
    ranked = sorted(everything, key=lambda f: (-_SEVERITY[f.status], -f.psi, f.name))
    report.worst = [f.name for f in ranked[:TOP_WORST]]
    return report


__all__ = [
    "ALERT",
    "EPS",
    "INSUFFICIENT",
    "NO_REFERENCE",
    "OK",
    "OTHER",
    "SIGNIFICANCE",
    "WARN",
    "DriftReport",
    "FeatureDrift",
    "build_reference",
    "categorical_profile",
    "compare",
    "ks_pvalue",
    "ks_statistic",
    "numeric_profile",
    "psi",
    "psi_noise",
]
