"""Training: a pipeline over a feature spec, an optional calibration, honest holdout metrics.

Three algorithms: ``logistic_regression`` (one-hot + scaling + LR, compiled to lookups,
explained exactly) and ``hist_gradient_boosting`` (ordinal codes + histogram gradient
boosting, compiled to node arrays, explained per tree path), both :mod:`scoring.pipelines`,
and ``xgboost`` (the same ordinal codes + ``XGBClassifier``, :mod:`scoring._xgb_sklearn`,
compiled from the booster's JSON by :mod:`scoring.xgb`; needs the ``xgboost`` extra).  All are
compiled at training time (:mod:`scoring.compiled`, :mod:`scoring.trees`, :mod:`scoring.xgb`):
scoring processes import neither scikit-learn nor XGBoost.

Splits: when every row has a timestamp (``times``, or the rows' ``created_at``), the holdout is
the most recent 20 % and the calibration slice the most recent 20 % of the rest, so the model
is judged on rows newer than anything it saw, as in production.  Otherwise the split is a
seeded, stratified random one.  Metrics on the holdout, for the calibrated probabilities:
ROC AUC, PR AUC (average precision), Brier score, lift of the top decile, base rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from junction.core.errors import ConfigError, ScoringInputError
from scoring.calibration import Calibration
from scoring.compiled import CompiledLinearModel
from scoring.lead_spec import LEAD_SPEC
from scoring.model_file import CompiledModel
from scoring.pipelines import build_linear, build_trees, calibrate
from scoring.spec import FeatureSpec, columns_from_rows, to_matrix

HOLDOUT_SHARE = 0.2
CALIBRATION_SHARE = 0.2
ALGORITHMS = ("logistic_regression", "hist_gradient_boosting", "xgboost")
CALIBRATIONS = ("sigmoid", "isotonic")
MIN_ROWS = 10


@dataclass(frozen=True)
class TrainedModel:
    """A fitted, compiled model and what is known about it.

    Attributes:
        artifact: what the registry saves with skops: the fitted pipeline, or the calibrated
            classifier around it.
        pipeline: the fitted (uncalibrated) pipeline, ``pre`` then ``clf``.
        compiled: the pipeline compiled for scoring.
        calibrator: its compiled calibration (``None``: the logistic of the margin).
        spec: the feature spec.
        algorithm: ``logistic_regression``, ``hist_gradient_boosting`` or ``xgboost``.
        calibration: ``sigmoid``, ``isotonic`` or ``None``.
        params: the algorithm's parameters that were set.
        metrics: holdout metrics (roc_auc, pr_auc, brier, lift_top_decile, base_rate).
        n_train, n_calibration, n_holdout: rows per slice.
        split: ``time`` or ``random``.
        window: the time span of each slice (ISO 8601) for a time split, else empty.
        skipped: rows left out because their features or label were invalid.
        seed: the seed of the split and of the estimators.
        reference: the drift reference profile of the training rows (:mod:`scoring.drift`).
        numeric_effects: per numeric feature, the sign (+1, -1 or 0) of its association with
            the model's margin on the training rows, so that reasons can say "higher" or
            "lower than usual" for models whose contributions do not carry it (the trees).
        holdout_proba: the calibrated probabilities of the holdout rows (e.g. for grade cuts).
    """

    artifact: Any
    pipeline: Any
    compiled: CompiledModel
    calibrator: Calibration | None
    spec: FeatureSpec
    algorithm: str
    calibration: str | None
    params: dict[str, Any]
    metrics: dict[str, float]
    n_train: int
    n_calibration: int
    n_holdout: int
    split: str
    window: dict[str, str]
    skipped: int
    seed: int
    reference: dict[str, Any] | None = None
    numeric_effects: dict[str, float] = field(default_factory=dict)
    holdout_proba: npt.NDArray[np.float64] | None = None
    sklearn_version: str = field(default_factory=lambda: str(sklearn.__version__))

    @property
    def feature_schema_hash(self) -> str:
        """The spec's schema hash."""
        return self.spec.schema_hash


def evaluate(
    y_true: Sequence[int] | npt.NDArray[Any], proba: npt.NDArray[np.float64]
) -> dict[str, float]:
    """Return ROC AUC, PR AUC, Brier score, top-decile lift and base rate of predictions."""
    y = np.asarray(y_true, dtype=np.int64)
    base_rate = float(y.mean())
    top = max(1, math.ceil(len(y) * 0.1))
    order = np.argsort(-proba, kind="stable")[:top]
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "brier": float(brier_score_loss(y, proba)),
        "lift_top_decile": float(y[order].mean() / base_rate) if base_rate else 0.0,
        "base_rate": base_rate,
    }


def _time_of(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return _time_of(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _created(record: Any) -> Any:
    if isinstance(record, Mapping):
        return record.get("created_at")
    return getattr(record, "created_at", None)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _stratified(
    y: npt.NDArray[np.int64], share: float, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """A mask choosing ``share`` of each class at random."""
    mask = np.zeros(len(y), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        take = round(len(idx) * share)
        mask[rng.permutation(idx)[:take]] = True
    return mask


def split_indices(
    y: npt.NDArray[np.int64],
    stamps: Sequence[float | None],
    seed: int,
    *,
    calibration: bool,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], str]:
    """Indexes of the fit, calibration and holdout slices, and ``time`` or ``random``."""
    n = len(y)
    if all(s is not None for s in stamps):
        order = np.array(sorted(range(n), key=lambda i: stamps[i]), dtype=np.intp)  # type: ignore[arg-type,return-value]
        n_hold = max(1, round(n * HOLDOUT_SHARE))
        rest, hold = order[: n - n_hold], order[n - n_hold :]
        n_cal = round(len(rest) * CALIBRATION_SHARE) if calibration else 0
        return rest[: len(rest) - n_cal], rest[len(rest) - n_cal :], hold, "time"
    rng = np.random.default_rng(seed)
    hold_mask = _stratified(y, HOLDOUT_SHARE, rng)
    rest = np.flatnonzero(~hold_mask)
    cal_mask = np.zeros(n, dtype=bool)
    if calibration:
        cal_mask[rest[_stratified(y[rest], CALIBRATION_SHARE, rng)]] = True
    fit = np.flatnonzero(~hold_mask & ~cal_mask)
    return fit, np.flatnonzero(cal_mask), np.flatnonzero(hold_mask), "random"


def compile_pipeline(pipeline: Any, spec: FeatureSpec, algorithm: str) -> CompiledModel:
    """The compiled form of a fitted pipeline of ``algorithm``."""
    if algorithm == "logistic_regression":
        return CompiledLinearModel(pipeline, spec)
    if algorithm == "xgboost":
        from scoring.xgb import CompiledXgbModel

        return CompiledXgbModel.from_pipeline(pipeline, spec)
    from scoring.trees import CompiledTreeModel

    model: CompiledModel = CompiledTreeModel(pipeline, spec)
    return model


def train_model(
    rows: Sequence[Any],
    labels: Sequence[int | None],
    *,
    seed: int,
    spec: FeatureSpec = LEAD_SPEC,
    algorithm: str = "logistic_regression",
    calibration: str | None = None,
    params: Mapping[str, Any] | None = None,
    times: Sequence[Any] | None = None,
) -> TrainedModel:
    """Fit, calibrate, compile and measure a model.

    Args:
        rows: records (dicts or objects with the spec's fields).
        labels: 1 (the outcome happened), 0, or None (unknown: the row is skipped).
        seed: seeds the split and the estimators.
        spec: the feature spec.
        algorithm: one of :data:`ALGORITHMS`.
        calibration: ``sigmoid``, ``isotonic`` or ``None``.
        params: algorithm parameters (``c`` for the logistic regression; any
            ``HistGradientBoostingClassifier`` parameter for the trees; for ``xgboost`` the
            ``XGBClassifier`` parameters of :data:`scoring._xgb_sklearn.XGB_PARAMS`).
        times: one timestamp per row for the time split (default: the rows' ``created_at``).

    Raises:
        ConfigError: unknown algorithm or calibration, ``xgboost`` without XGBoost installed,
            or data that cannot train a model (length mismatch, too few rows, a slice with
            one class).
    """
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            "unknown algorithm", context={"algorithm": algorithm, "known": ALGORITHMS}
        )
    if algorithm == "xgboost":
        from scoring.xgb import require_xgboost

        require_xgboost()
    if calibration is not None and calibration not in CALIBRATIONS:
        raise ConfigError("unknown calibration", context={"calibration": calibration})
    if len(rows) != len(labels) or (times is not None and len(times) != len(rows)):
        raise ConfigError("training rows, labels and times differ in length")
    data = labelled_rows(rows, labels, spec, times)
    feats, keep, y, stamps = data.feats, data.keep, data.y, data.stamps
    if len(feats) < MIN_ROWS:
        raise ConfigError("too few valid training rows", context={"valid": len(feats)})
    fit, cal, hold, split = split_indices(y, stamps, seed, calibration=calibration is not None)
    for name, part in (("training", fit), ("calibration", cal), ("holdout", hold)):
        if (name != "calibration" or calibration) and len(set(y[part].tolist())) < 2:
            raise ConfigError(
                f"the {name} slice must hold both classes", context={"rows": len(part)}
            )
    x = to_matrix(spec, feats)
    p = dict(params or {})
    pipeline = build_pipeline(spec, algorithm, seed, p)
    pipeline.fit(x[fit], y[fit])
    artifact: Any = pipeline
    calibrator = None
    if calibration is not None:
        artifact = calibrate(pipeline, x[cal], y[cal], calibration)  # type: ignore[arg-type]
        calibrator = Calibration.from_calibrated(artifact)
    compiled = compile_pipeline(pipeline, spec, algorithm)
    proba = artifact.predict_proba(x[hold])[:, 1]
    window: dict[str, str] = {}
    if split == "time":
        for name, part in (("train", fit), ("calibration", cal), ("holdout", hold)):
            if len(part):
                ts = [stamps[i] for i in part.tolist()]
                window[f"{name}_from"] = _iso(min(ts))
                window[f"{name}_to"] = _iso(max(ts))
    effects = _numeric_effects(spec, x[fit], pipeline.decision_function(x[fit]))
    reference = _reference(
        spec, [feats[i] for i in fit.tolist()], artifact.predict_proba(x[fit])[:, 1]
    )
    return TrainedModel(
        artifact=artifact,
        pipeline=pipeline,
        compiled=compiled,
        calibrator=calibrator,
        spec=spec,
        algorithm=algorithm,
        calibration=calibration,
        params=p,
        metrics=evaluate(y[hold], proba),
        n_train=len(fit),
        n_calibration=len(cal),
        n_holdout=len(hold),
        split=split,
        window=window,
        skipped=len(rows) - len(keep),
        seed=seed,
        reference=reference,
        numeric_effects=effects,
        holdout_proba=np.asarray(proba, dtype=np.float64),
    )


@dataclass(frozen=True)
class LabelledRows:
    """The rows training can use: their features, original indexes, labels and times."""

    feats: list[tuple[Any, ...]]
    keep: list[int]
    y: npt.NDArray[np.int64]
    stamps: list[float | None]


def labelled_rows(
    rows: Sequence[Any],
    labels: Sequence[int | None],
    spec: FeatureSpec,
    times: Sequence[Any] | None = None,
) -> LabelledRows:
    """Rows with a 0/1 label and valid features (others are skipped), as training sees them.

    ``times`` (one per row) default to the rows' ``created_at``; unreadable times are None.
    """
    feats: list[tuple[Any, ...]] = []
    keep: list[int] = []
    for i, row in enumerate(rows):
        if labels[i] not in (0, 1):
            continue
        try:
            feats.append(spec.extract(row))
        except ScoringInputError:
            continue  # an invalid training row teaches nothing; it is counted as skipped
        keep.append(i)
    y = np.asarray([labels[i] for i in keep], dtype=np.int64)
    raw = [times[i] for i in keep] if times is not None else [_created(rows[i]) for i in keep]
    return LabelledRows(feats, keep, y, [_time_of(t) for t in raw])


def build_pipeline(spec: FeatureSpec, algorithm: str, seed: int, params: Mapping[str, Any]) -> Any:
    """The unfitted pipeline of ``algorithm`` with ``params``.

    Raises:
        ConfigError: an unknown algorithm or parameter.
    """
    p = dict(params)
    if algorithm == "logistic_regression":
        extra = set(p) - {"c"}
        if extra:
            raise ConfigError(
                "unknown logistic regression parameter", context={"params": sorted(extra)}
            )
        return build_linear(spec, seed, c=float(p.get("c", 1.0)))
    if algorithm == "xgboost":
        from scoring._xgb_sklearn import build_xgboost

        return build_xgboost(spec, seed, **p)
    if algorithm == "hist_gradient_boosting":
        return build_trees(spec, seed, **p)
    raise ConfigError("unknown algorithm", context={"algorithm": algorithm, "known": ALGORITHMS})


def _numeric_effects(
    spec: FeatureSpec, x: npt.NDArray[Any], margin: npt.NDArray[np.float64]
) -> dict[str, float]:
    """Sign of each numeric feature's correlation with the margin (0 for a constant column)."""
    start = len(spec.categorical)
    out: dict[str, float] = {}
    for j, name in enumerate(spec.numeric):
        col = np.asarray(x[:, start + j], dtype=np.float64)
        if col.std() == 0.0 or margin.std() == 0.0:
            out[name] = 0.0
            continue
        out[name] = float(np.sign(np.corrcoef(col, margin)[0, 1]))
    return out


def _reference(
    spec: FeatureSpec, rows: Sequence[Sequence[Any]], proba: npt.NDArray[np.float64]
) -> dict[str, Any] | None:
    """The drift reference of the training rows (None when the drift module is absent)."""
    try:
        from scoring.drift import build_reference
    except ImportError:  # pragma: no cover - the drift module ships with the package
        return None
    return build_reference(spec, columns_from_rows(spec, rows), proba)


def train_lead_model(
    rows: Sequence[Any], labels: Sequence[int], *, seed: int, c: float = 1.0
) -> TrainedModel:
    """Fit the default lead model: logistic regression on the lead spec, no calibration."""
    return train_model(rows, labels, seed=seed, params={"c": c})
