"""Cross-validation and hyperparameter search on the training slice (never the holdout).

:func:`training_slice` selects exactly the rows :func:`scoring.train.train_model` will fit and
calibrate on with the same seed (the same valid rows, the same time or stratified split), so
neither the cross-validated figures nor the search ever see the holdout that the model card's
metrics and the promotion gate are judged on.

:func:`cross_validate` is a stratified, shuffled K-fold ROC AUC of the uncalibrated pipeline
(a sigmoid calibration is monotone and leaves the AUC unchanged).  The folds ignore time, so
on data that drifts they flatter the model a little; the time-split holdout does not.

:func:`tune` is an Optuna search (optional extra ``junction-hub[tune]``) with a seeded TPE
sampler maximising the mean K-fold ROC AUC.  The first trial is the pipeline's defaults, so the
result is never worse on cross-validation than not searching.  Search spaces:

* ``logistic_regression``: ``c`` (inverse L2 strength) log-uniform in [1e-3, 10].
* ``hist_gradient_boosting``: ``learning_rate`` log-uniform [0.01, 0.3], ``max_leaf_nodes``
  [4, 64] and ``min_samples_leaf`` [5, 200] (integers, log scale), ``l2_regularization``
  log-uniform [1e-4, 10], ``max_iter`` [50, 500] (log scale; early stopping still applies).
* ``xgboost``: ``learning_rate`` log-uniform [0.01, 0.3], ``max_depth`` [2, 6],
  ``min_child_weight`` log-uniform [1, 20], ``subsample`` [0.6, 1], ``n_estimators`` [100, 600]
  (log scale).

Parameters given on the command line stay fixed and are not searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from junction.core.errors import ConfigError
from scoring.lead_spec import LEAD_SPEC
from scoring.pipelines import TREE_DEFAULTS
from scoring.spec import FeatureSpec, to_matrix
from scoring.train import build_pipeline, labelled_rows, split_indices

LR_DEFAULTS: dict[str, Any] = {"c": 1.0}
SINGLE_THREAD_ROWS = 100_000
"""Below this many rows the folds fit on one thread: OpenMP's start-up and contention cost
more than the split finding of a small fit (measured 30x slower on a busy 2-core machine)."""
TUNED_XGB_PARAMS = ("learning_rate", "max_depth", "min_child_weight", "subsample", "n_estimators")
TUNED_TREE_PARAMS = (
    "learning_rate",
    "max_leaf_nodes",
    "min_samples_leaf",
    "l2_regularization",
    "max_iter",
)
INSTALL_HINT = "hyperparameter search needs Optuna: pip install 'junction-hub[tune]'"

TrialProgress = Callable[[int, float], None]
"""Called after each trial with its number (from 1) and the best mean AUC so far."""


@dataclass(frozen=True)
class TrainingSlice:
    """The rows a model with this seed is fitted and calibrated on, as a matrix."""

    x: npt.NDArray[np.object_]
    y: npt.NDArray[np.int64]
    n_holdout: int


@dataclass(frozen=True)
class CvResult:
    """K-fold ROC AUC of one parameter set."""

    k: int
    mean: float
    sd: float
    folds: list[float]

    def to_dict(self) -> dict[str, Any]:
        """For the model card."""
        return {
            "metric": "roc_auc",
            "k": self.k,
            "mean": self.mean,
            "sd": self.sd,
            "folds": list(self.folds),
            "rows": "training slice (holdout excluded), stratified shuffled folds",
        }


@dataclass(frozen=True)
class TuneResult:
    """The best parameters an Optuna search found, and its trials."""

    params: dict[str, Any]
    cv: CvResult
    n_trials: int
    seed: int
    trials: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """For the model card."""
        return {
            "sampler": "optuna TPE",
            "seed": self.seed,
            "trials": self.n_trials,
            "objective": f"mean {self.cv.k}-fold ROC AUC on the training slice",
            "best_params": dict(self.params),
            "best_cv_mean": self.cv.mean,
            "best_cv_sd": self.cv.sd,
        }


def training_slice(
    rows: Sequence[Any],
    labels: Sequence[int | None],
    *,
    seed: int,
    spec: FeatureSpec = LEAD_SPEC,
    calibration: str | None = None,
    times: Sequence[Any] | None = None,
) -> TrainingSlice:
    """The fit and calibration rows of ``train_model`` with the same arguments (no holdout).

    Raises:
        ConfigError: data that ``train_model`` would refuse (too few rows, one class).
    """
    data = labelled_rows(rows, labels, spec, times)
    feats, y, stamps = data.feats, data.y, data.stamps
    if len(set(y.tolist())) < 2:
        raise ConfigError("the training rows must hold both classes", context={"rows": len(y)})
    fit, cal, hold, _ = split_indices(y, stamps, seed, calibration=calibration is not None)
    idx = np.sort(np.concatenate([fit, cal]))
    x = to_matrix(spec, [feats[i] for i in idx.tolist()])
    return TrainingSlice(x=x, y=y[idx], n_holdout=len(hold))


def cross_validate(
    data: TrainingSlice,
    spec: FeatureSpec,
    algorithm: str,
    params: Mapping[str, Any],
    *,
    k: int = 5,
    seed: int = 0,
) -> CvResult:
    """Stratified K-fold ROC AUC of the (uncalibrated) pipeline on ``data``.

    Raises:
        ConfigError: ``k`` < 2, or a class with fewer than ``k`` rows.
    """
    if k < 2:
        raise ConfigError("cross-validation needs at least 2 folds", context={"k": k})
    smallest = int(min(np.bincount(data.y, minlength=2)))
    if smallest < k:
        raise ConfigError(
            "too few rows of one class for this many folds: lower --cv",
            context={"k": k, "smallest_class": smallest},
        )
    folds: list[float] = []
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    threads = 1 if len(data.y) < SINGLE_THREAD_ROWS else None
    with threadpool_limits(limits=threads):
        for train, valid in splitter.split(data.x, data.y):
            pipe = build_pipeline(spec, algorithm, seed, params)
            pipe.fit(data.x[train], data.y[train])
            proba = pipe.predict_proba(data.x[valid])[:, 1]
            folds.append(float(roc_auc_score(data.y[valid], proba)))
    return CvResult(k=k, mean=float(np.mean(folds)), sd=float(np.std(folds)), folds=folds)


def _suggest(trial: Any, algorithm: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = dict(fixed)
    if algorithm == "logistic_regression":
        if "c" not in fixed:
            p["c"] = trial.suggest_float("c", 1e-3, 10.0, log=True)
        return p
    space: dict[str, Callable[[], Any]]
    if algorithm == "xgboost":
        space = {
            "learning_rate": lambda: trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": lambda: trial.suggest_int("max_depth", 2, 6),
            "min_child_weight": lambda: trial.suggest_float(
                "min_child_weight", 1.0, 20.0, log=True
            ),
            "subsample": lambda: trial.suggest_float("subsample", 0.6, 1.0),
            "n_estimators": lambda: trial.suggest_int("n_estimators", 100, 600, log=True),
        }
        return p | {name: suggest() for name, suggest in space.items() if name not in fixed}
    space = {
        "learning_rate": lambda: trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_leaf_nodes": lambda: trial.suggest_int("max_leaf_nodes", 4, 64, log=True),
        "min_samples_leaf": lambda: trial.suggest_int("min_samples_leaf", 5, 200, log=True),
        "l2_regularization": lambda: trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
        "max_iter": lambda: trial.suggest_int("max_iter", 50, 500, log=True),
    }
    for name, suggest in space.items():
        if name not in fixed:
            p[name] = suggest()
    return p


def _defaults(algorithm: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The first trial: the pipeline's defaults for the searched parameters."""
    if algorithm == "logistic_regression":
        return {k: v for k, v in LR_DEFAULTS.items() if k not in fixed}
    if algorithm == "xgboost":
        from scoring._xgb_sklearn import XGB_DEFAULTS

        return {k: XGB_DEFAULTS[k] for k in TUNED_XGB_PARAMS if k not in fixed}
    return {k: TREE_DEFAULTS[k] for k in TUNED_TREE_PARAMS if k not in fixed}


def tune(
    data: TrainingSlice,
    spec: FeatureSpec,
    algorithm: str,
    *,
    trials: int,
    k: int = 5,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    progress: TrialProgress | None = None,
) -> TuneResult:
    """Search ``algorithm``'s parameters for the best mean K-fold ROC AUC on ``data``.

    Args:
        data: the training slice (:func:`training_slice`).
        spec: the feature spec.
        algorithm: ``logistic_regression``, ``hist_gradient_boosting`` or ``xgboost``.
        trials: how many parameter sets to try (the first is the defaults).
        k: folds per trial.
        seed: seeds the sampler, the folds and the estimators: same seed, same result.
        fixed: parameters not searched (given by the user).
        progress: called after each trial.

    Raises:
        ConfigError: Optuna is not installed, ``trials`` < 1, or :func:`cross_validate`'s
            refusals.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    if trials < 1:
        raise ConfigError("--tune needs at least one trial", context={"trials": trials})
    fixed = dict(fixed or {})
    if algorithm not in ("logistic_regression", "hist_gradient_boosting", "xgboost"):
        raise ConfigError("unknown algorithm", context={"algorithm": algorithm})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(_defaults(algorithm, fixed))
    results: dict[int, CvResult] = {}
    history: list[tuple[dict[str, Any], float]] = []

    def objective(trial: Any) -> float:
        params = _suggest(trial, algorithm, fixed)
        cv = cross_validate(data, spec, algorithm, params, k=k, seed=seed)
        results[trial.number] = cv
        history.append((params, cv.mean))
        return cv.mean

    def report(study: Any, trial: Any) -> None:
        if progress is not None:
            progress(trial.number + 1, float(study.best_value))

    study.optimize(objective, n_trials=trials, callbacks=[report], catch=())
    best = study.best_trial
    params = {**fixed, **best.params}
    cv = results[best.number]
    if not math.isfinite(cv.mean):  # pragma: no cover - roc_auc_score is always finite here
        raise ConfigError("the search found no usable parameters")
    return TuneResult(params=params, cv=cv, n_trials=trials, seed=seed, trials=history)
