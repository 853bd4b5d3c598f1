"""Training of the lead model: a scikit-learn pipeline over the feature spec, with honest metrics.

The pipeline is ``ColumnTransformer`` (one-hot for the categoricals with unknown categories
ignored, standard scaling for the numerics, the binary flags passed through) followed by a
``LogisticRegression``.  A linear model is on purpose: its fitted state compiles into plain
lookups and arrays (see :mod:`scoring.sklearn_model`), scores in microseconds and explains
itself by signed contributions.

The holdout is the most recent 20 % of the leads by ``created_at`` when every lead has one
(the model is judged on leads newer than anything it saw, as in production), otherwise a
seeded random 20 %.  Metrics on the holdout: ROC AUC, PR AUC (average precision), Brier score
and the lift of the top decile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from junction.core.errors import ConfigError, ScoringInputError
from scoring.batch_features import to_matrix
from scoring.features import BINARY, CATEGORICAL, FEATURE_SCHEMA_HASH, NUMERIC, FeatureRow, extract

HOLDOUT_SHARE = 0.2

_CAT_COLS = list(range(len(CATEGORICAL)))
_NUM_COLS = list(range(len(CATEGORICAL), len(CATEGORICAL) + len(NUMERIC)))
_BIN_COLS = list(
    range(len(CATEGORICAL) + len(NUMERIC), len(CATEGORICAL) + len(NUMERIC) + len(BINARY))
)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted lead model and what is known about it.

    Attributes:
        pipeline: the fitted scikit-learn pipeline (``pre`` then ``clf``).
        metrics: holdout metrics (roc_auc, pr_auc, brier, lift_top_decile, base_rate).
        n_train: rows the model was fitted on.
        n_holdout: rows the metrics were measured on.
        split: ``"time"`` or ``"random"``.
        skipped: rows left out because their features were invalid.
        seed: the seed of the split and of the solver.
    """

    pipeline: Pipeline
    metrics: dict[str, float]
    n_train: int
    n_holdout: int
    split: str
    skipped: int
    seed: int
    feature_schema_hash: str = FEATURE_SCHEMA_HASH
    sklearn_version: str = field(default_factory=lambda: str(sklearn.__version__))


def build_pipeline(seed: int, *, c: float = 1.0) -> Pipeline:
    """Return the unfitted lead pipeline over the ``to_matrix`` column layout."""
    pre = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), _CAT_COLS),
            ("num", StandardScaler(), _NUM_COLS),
            ("bin", "passthrough", _BIN_COLS),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return Pipeline([("pre", pre), ("clf", clf)])


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


def _created(record: Any) -> Any:
    if isinstance(record, Mapping):
        return record.get("created_at")
    return getattr(record, "created_at", None)


def _split(
    records: Sequence[Any], seed: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], str]:
    n = len(records)
    n_hold = max(1, round(n * HOLDOUT_SHARE))
    stamps = [_created(r) for r in records]
    if all(s is not None for s in stamps):
        order = np.array(sorted(range(n), key=stamps.__getitem__), dtype=np.intp)
        split = "time"
    else:
        order = np.random.default_rng(seed).permutation(n).astype(np.intp)
        split = "random"
    return order[: n - n_hold], order[n - n_hold :], split


def train_lead_model(
    rows: Sequence[Any], labels: Sequence[int], *, seed: int, c: float = 1.0
) -> TrainedModel:
    """Fit the lead model on canonical leads and measure it on a holdout.

    Args:
        rows: canonical leads (dicts or objects with the Lead fields).
        labels: 1 if the lead converted, else 0; one per row.
        seed: seeds the random split (when a time split is impossible) and the solver.
        c: inverse L2 regularization strength of the logistic regression.

    Raises:
        ConfigError: the data cannot train a model (length mismatch, too few rows, one class).
    """
    if len(rows) != len(labels):
        raise ConfigError("training rows and labels differ in length")
    feats: list[FeatureRow] = []
    keep: list[int] = []
    for i, row in enumerate(rows):
        try:
            feats.append(extract(row))
        except ScoringInputError:
            continue  # an invalid training row teaches nothing; it is counted as skipped
        keep.append(i)
    if len(feats) < 10:
        raise ConfigError("too few valid training rows", context={"valid": len(feats)})
    kept_rows = [rows[i] for i in keep]
    y = np.asarray([labels[i] for i in keep], dtype=np.int64)
    x = to_matrix(feats)
    train_idx, hold_idx, split = _split(kept_rows, seed)
    if len(set(y[train_idx].tolist())) < 2 or len(set(y[hold_idx].tolist())) < 2:
        raise ConfigError("training and holdout data must each hold both classes")
    pipeline = build_pipeline(seed, c=c)
    pipeline.fit(x[train_idx], y[train_idx])
    proba = pipeline.predict_proba(x[hold_idx])[:, 1]
    return TrainedModel(
        pipeline=pipeline,
        metrics=evaluate(y[hold_idx], proba),
        n_train=len(train_idx),
        n_holdout=len(hold_idx),
        split=split,
        skipped=len(rows) - len(keep),
        seed=seed,
    )
