"""An XGBoost booster compiled into node tables (neither XGBoost nor scikit-learn at score time).

:class:`CompiledXgbModel` holds the trees of a fitted :func:`scoring._xgb_sklearn.build_xgboost`
pipeline, read from the booster's own JSON (``Booster.save_raw("json")``), and the pipeline's
``OrdinalEncoder`` categories.  It scores as XGBoost's CPU predictor does:

* **Inputs are float32.**  XGBoost copies every input into a float32 matrix; a numeric split
  sends ``x`` left iff ``float32(x) < threshold`` (strictly less, thresholds float32), so the
  compiled model rounds each input to float32 before comparing.  Comparing doubles would send
  a value just below a threshold that rounds up to it the other way.
* **Missing values** (NaN, and categories the encoder never saw, which it encodes as NaN) go
  the split's ``default_left`` way.  Categories are the encoder's ordinal codes, compared as
  numbers: the pipeline does not use XGBoost's native categorical splits (which need pandas
  category columns at predict time and a partition format of their own).
* **The margin is a float32 sum**: the base margin (the logit of the booster's ``base_score``,
  in float32 as XGBoost computes it) plus one leaf value per tree, added in tree order with a
  float32 rounding after each addition.  The batch path reproduces XGBoost's
  ``predict(output_margin=True)`` bit for bit; the pure-Python row path does the same with a
  ``struct`` round trip per tree.

Every split is compiled into a table indexed by a small integer *code* of the row's value, as
in :mod:`scoring.trees`: per feature, the number of that feature's thresholds (over all trees)
at or below ``float32(x)`` (``bisect_right``), so ``float32(x) < t_k`` iff ``code <= k``, and
NaN a code of its own.  A categorical value's code is precomputed from its ordinal code.

**Contributions, by the path method of Saabas (XGBoost's ``approx_contribs``).**  Every node
gets a value: a leaf its output, an internal node the cover-weighted mean of its children's
values, ``(v_l * cover_l + v_r * cover_r) / cover``, where the cover is the node's
``sum_hessian`` in the booster JSON (for the logistic loss, the sum of ``p (1 - p)`` over the
training rows that reached the node), i.e. exactly what XGBoost's
``predict(pred_contribs=True, approx_contribs=True)`` uses.  The booster's ``base_weights``
are not used: they are each node's own Newton step, not the mean of the leaves below it.
Each split on a row's path credits the change of value from the node to the child the row
takes to the split's feature; summed over the path this telescopes to ``leaf - root``, so
``bias + sum(contributions) == margin`` for every row (to rounding), with
``bias = base margin + sum of root values``.  Like all path methods it is exact in sum but
depends on the order of the splits (SHAP does not; XGBoost's exact TreeSHAP costs
``O(leaves * depth^2)`` per tree and is left out of the hot path).

Terms are numbered like :class:`scoring.trees.CompiledTreeModel`: each category of each
categorical feature, one ``=other`` term per categorical feature, then the numerics and flags.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from junction.core.errors import ConfigError, ModelLoadError
from scoring._ensemble import CompiledEnsemble, mean_values
from scoring._ensemble_format import header
from scoring._json_checks import f32
from scoring._xgb_format import FORMAT, KIND, XgbTree, parse
from scoring.calibration import Calibration
from scoring.spec import FeatureSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

INSTALL_HINT = "install the XGBoost extra: pip install 'junction-hub[xgboost]'"


def require_xgboost() -> None:
    """Raise :class:`ConfigError` unless the ``xgboost`` module can be imported.

    Raises:
        ConfigError: XGBoost is not installed (the ``xgboost`` extra installs ``xgboost-cpu``).
    """
    try:
        import xgboost  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"the xgboost algorithm needs XGBoost: {INSTALL_HINT}",
            context={"algorithm": "xgboost"},
        ) from None


def _base_margin(base_score: Any) -> float:
    """The margin XGBoost starts from: ``-log(1 / p - 1)`` of ``base_score`` in float32."""
    text = str(base_score).strip().removeprefix("[").removesuffix("]")
    try:
        p = np.float32(float(text))
    except ValueError:
        raise ModelLoadError("the booster's base_score is not a number") from None
    if not 0.0 < float(p) < 1.0:
        raise ModelLoadError("the booster's base_score is not a probability")
    with np.errstate(all="ignore"):
        margin = -np.log(np.float32(1.0) / p - np.float32(1.0))
    return float(np.float32(margin))


def _check_booster(d: Mapping[str, Any], n_features: int) -> list[Mapping[str, Any]]:
    """Return the trees of a booster JSON, checking it is one the compiled model reproduces."""
    try:
        learner = d["learner"]
        params = learner["learner_model_param"]
        gbm = learner["gradient_booster"]
        model = gbm["model"]
        trees = list(model["trees"])
        ok = (
            learner["objective"]["name"] == "binary:logistic"
            and gbm["name"] == "gbtree"
            and str(params.get("num_class", "0")) == "0"
            and str(params.get("num_target", "1")) == "1"
            and int(params["num_feature"]) == n_features
            and str(model["gbtree_model_param"]["num_parallel_tree"]) == "1"
            and list(model["tree_info"]) == [0] * len(trees)
            and not any((model.get("cats") or {}).values())
            and all(not t["categories_nodes"] and not any(t["split_type"]) for t in trees)
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok or not trees:
        raise ModelLoadError(
            "the booster is not a binary:logistic gbtree over the feature spec's columns"
        )
    return trees


def _tree_dict(t: Mapping[str, Any]) -> dict[str, list[Any]]:
    """One booster tree in pre-order (children after parents), numbers as float32."""
    lc, rc = t["left_children"], t["right_children"]
    out: dict[str, list[Any]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "default_left", "value", "cover")
    }
    order: list[int] = []
    stack = [0]
    while stack:  # pre-order, left first, so that children follow their parent
        i = stack.pop()
        order.append(i)
        if lc[i] != -1:
            stack += [rc[i], lc[i]]
    new = {old: j for j, old in enumerate(order)}
    for i in order:
        leaf = lc[i] == -1
        cond = f32(float(t["split_conditions"][i]))
        out["feature"].append(-1 if leaf else int(t["split_indices"][i]))
        out["threshold"].append(0.0 if leaf else cond)
        out["left"].append(0 if leaf else new[lc[i]])
        out["right"].append(0 if leaf else new[rc[i]])
        out["default_left"].append(bool(t["default_left"][i]) and not leaf)
        out["value"].append(cond if leaf else 0.0)
        out["cover"].append(float(t["sum_hessian"][i]))
    return out


def compile_booster(
    booster_json: Mapping[str, Any], categories: Sequence[Sequence[str]], spec: FeatureSpec
) -> dict[str, Any]:
    """The plain-JSON form (:meth:`CompiledXgbModel.to_dict`) of a booster's JSON dump.

    Args:
        booster_json: ``json.loads(booster.save_raw("json"))``.
        categories: per categorical feature of ``spec``, the encoder's categories in code order.
        spec: the feature spec whose ``(*categorical, *numeric, *binary)`` columns it splits on.

    Raises:
        ModelLoadError: the booster is not a single-output ``binary:logistic`` gbtree with
            numeric splits over ``spec``'s columns.
    """
    n_features = len(spec.categorical) + len(spec.numeric) + len(spec.binary)
    trees = _check_booster(booster_json, n_features)
    params = booster_json["learner"]["learner_model_param"]
    return header(FORMAT, KIND, spec, categories) | {
        "base_margin": _base_margin(params["base_score"]),
        "trees": [_tree_dict(t) for t in trees],
    }


class CompiledXgbModel(CompiledEnsemble[XgbTree]):
    """Node tables equivalent to a fitted, optionally calibrated, XGBoost pipeline.

    Build it with :meth:`from_pipeline` (needs scikit-learn and XGBoost) or :meth:`from_dict`
    (needs neither).  Scoring and contributions are
    :class:`~scoring._ensemble.CompiledEnsemble`'s, with float32 inputs and margins.

    Attributes:
        kind: ``xgb_trees``.
        baseline: the base margin (float32), the margin before any tree.
    """

    kind = KIND
    _bisect_right = True
    _float32 = True

    @classmethod
    def from_pipeline(
        cls, pipeline: Pipeline, spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> CompiledXgbModel:
        """Compile a fitted :func:`scoring._xgb_sklearn.build_xgboost` pipeline.

        Raises:
            ModelLoadError: the pipeline is not the XGBoost pipeline over ``spec``.
        """
        from scoring._xgb_sklearn import compile_pipeline

        return cls.from_dict(compile_pipeline(pipeline, spec), spec, calibration=calibration)

    def _load(self, d: Mapping[str, Any], spec: FeatureSpec) -> None:
        p = self._parsed = parse(d, spec)
        self._setup_base(spec, p.base_margin, p.categories)
        thresholds: list[set[float]] = [set() for _ in range(self._nf)]
        for tree in p.trees:
            for f, t in zip(tree.feature, tree.threshold, strict=True):
                if f >= 0:
                    thresholds[f].add(t)
        self._thr = thr = [sorted(s) for s in thresholds]
        n_cat = self._n_cat
        # a category's code: where its ordinal code falls among the thresholds; others: missing
        self._setup_codes(
            [{c: bisect_right(thr[f], float(k)) for k, c in enumerate(cats)}
             for f, cats in enumerate(p.categories)],
            [len(t) + 1 for t in thr[:n_cat]],
            thr[n_cat:],
        )  # fmt: skip
        self._build_tables(p.trees)

    def _node_values(self, tree: XgbTree) -> list[float]:
        return mean_values(tree, tree.cover, tree.cover)

    def _node_table(self, tree: XgbTree, i: int, base: int) -> list[int]:
        thr = self._thr[tree.feature[i]]
        lo, hi = base + tree.left[i], base + tree.right[i]
        k = bisect_left(thr, tree.threshold[i])  # thr[k] is this node's threshold
        # codes 0..k: float32(x) < thr[k], left; k+1..len(thr): right; then the missing code
        return [lo] * (k + 1) + [hi] * (len(thr) - k) + [lo if tree.default_left[i] else hi]

    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values."""
        p = self._parsed
        return header(FORMAT, KIND, self.spec, p.categories) | {
            "base_margin": p.base_margin,
            "trees": [
                {
                    "feature": list(t.feature),
                    "threshold": list(t.threshold),
                    "left": list(t.left),
                    "right": list(t.right),
                    "default_left": list(t.default_left),
                    "value": list(t.value),
                    "cover": list(t.cover),
                }
                for t in p.trees
            ],
        }


__all__ = [
    "INSTALL_HINT",
    "CompiledXgbModel",
    "compile_booster",
    "f32",
    "require_xgboost",
]
