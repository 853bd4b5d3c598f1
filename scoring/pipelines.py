"""The scikit-learn pipelines the hub trains, over any feature spec, and their calibration.

Both pipelines take the ``(n, n_features)`` object array of :func:`scoring.spec.to_matrix`
(columns ``(*categorical, *numeric, *binary)`` of the spec) and have two named steps, ``pre``
(a ``ColumnTransformer``) and ``clf``:

* :func:`build_linear`: one-hot categories (unknown ones ignored), standardized numerics, the
  binary flags passed through, then ``LogisticRegression``.  Compiles to
  :class:`scoring.compiled.CompiledLinearModel`.
* :func:`build_trees`: categories to ordinal codes (unknown or missing to NaN, which the trees
  send the way their missing values went in training), numerics and flags passed through, then
  ``HistGradientBoostingClassifier`` with native categorical splits.  Compiles to
  :class:`scoring.trees.CompiledTreeModel`.

:func:`calibrate` wraps a fitted pipeline in ``CalibratedClassifierCV(FrozenEstimator(...))``
fitted on a calibration slice the pipeline never saw; its ``predict_proba`` is the reference
a compiled model (with :mod:`scoring.calibration`) must reproduce.

This module imports scikit-learn: training and compiling use it, a scoring process does not.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from junction.core.errors import ConfigError
from scoring.spec import FeatureSpec

CalibrationMethod = Literal["sigmoid", "isotonic"]

TREE_DEFAULTS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 1e-3,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
}
"""Defaults of :func:`build_trees`; early stopping holds out a seeded 10 % of the fit data."""


def _columns(spec: FeatureSpec) -> tuple[list[int], list[int], list[int]]:
    n_cat, n_num, n_bin = len(spec.categorical), len(spec.numeric), len(spec.binary)
    cats = list(range(n_cat))
    nums = list(range(n_cat, n_cat + n_num))
    bins = list(range(n_cat + n_num, n_cat + n_num + n_bin))
    return cats, nums, bins


def build_linear(spec: FeatureSpec, seed: int, *, c: float = 1.0) -> Pipeline:
    """Return the unfitted logistic-regression pipeline over ``spec``'s column layout.

    Args:
        spec: the feature spec whose rows the pipeline takes.
        seed: the solver's random state.
        c: inverse L2 regularization strength.
    """
    cats, nums, bins = _columns(spec)
    pre = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats),
            ("num", StandardScaler(), nums),
            ("bin", "passthrough", bins),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return Pipeline([("pre", pre), ("clf", clf)])


def build_trees(spec: FeatureSpec, seed: int, **params: Any) -> Pipeline:
    """Return the unfitted gradient-boosting pipeline over ``spec``'s column layout.

    The ``ColumnTransformer`` keeps the row order of the spec (codes of the categoricals, then
    the numerics and flags unchanged), so tree feature ``i`` is feature ``i`` of the row.

    Args:
        spec: the feature spec whose rows the pipeline takes.
        seed: seeds the early-stopping split (and any other randomness of the estimator).
        **params: ``HistGradientBoostingClassifier`` parameters overriding
            :data:`TREE_DEFAULTS`.

    Raises:
        ConfigError: a parameter the compiled model cannot reproduce (``loss``,
            ``categorical_features``, ``class_weight`` is fine) or an unknown one.
    """
    for fixed in ("categorical_features", "loss", "random_state"):
        if fixed in params:
            raise ConfigError(
                "this tree parameter is fixed by the pipeline", context={"param": fixed}
            )
    cats, nums, bins = _columns(spec)
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        dtype=np.float64,
    )
    pre = ColumnTransformer(
        [("cat", encoder, cats), ("num", "passthrough", nums), ("bin", "passthrough", bins)],
        remainder="drop",
        sparse_threshold=0.0,
    )
    try:
        clf = HistGradientBoostingClassifier(
            **{**TREE_DEFAULTS, **params},
            loss="log_loss",
            categorical_features=cats or None,
            random_state=seed,
        )
    except TypeError as exc:
        raise ConfigError("unknown tree parameter", details=str(exc)) from None
    return Pipeline([("pre", pre), ("clf", clf)])


def calibrate(
    fitted_pipeline: Pipeline,
    x_cal: npt.NDArray[Any],
    y_cal: npt.NDArray[Any],
    method: CalibrationMethod = "sigmoid",
) -> CalibratedClassifierCV:
    """Fit a probability calibration of a fitted pipeline on a slice it was not fitted on.

    Sigmoid (Platt) calibration maps the pipeline's decision function ``f`` (the log-odds
    for a logistic regression, the raw margin for the trees) to ``1 / (1 + exp(a f + b))``;
    isotonic calibration to a non-decreasing piecewise-linear function of ``f``.

    Args:
        fitted_pipeline: a fitted pipeline of :func:`build_linear` or :func:`build_trees`;
            it is frozen, not refitted.
        x_cal: calibration rows (the ``to_matrix`` layout).
        y_cal: their 0/1 labels; both classes must occur.
        method: ``"sigmoid"`` or ``"isotonic"``.

    Raises:
        ConfigError: an unknown method or a calibration slice with one class.
    """
    if method not in ("sigmoid", "isotonic"):
        raise ConfigError("unknown calibration method", context={"method": str(method)})
    if len(set(np.asarray(y_cal).tolist())) < 2:
        raise ConfigError("the calibration slice must hold both classes")
    cal = CalibratedClassifierCV(FrozenEstimator(fitted_pipeline), method=method)
    cal.fit(x_cal, y_cal)
    return cal
