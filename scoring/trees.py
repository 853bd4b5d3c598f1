"""A fitted gradient-boosting pipeline compiled into node tables (no scikit-learn at score time).

:class:`CompiledTreeModel` holds the trees of a fitted :func:`scoring.pipelines.build_trees`
pipeline (``HistGradientBoostingClassifier._predictors``) and its ``OrdinalEncoder``
categories, and scores exactly as ``predict_proba``: the raw margin is the baseline plus one
leaf value per tree, added in the same order as scikit-learn adds them (so it is the same
double), then the compiled :class:`~scoring.calibration.Calibration`.

**Routing, as scikit-learn's ``_predict_one_from_raw_data``.**  A numeric split sends ``x``
left iff ``x <= threshold``, and NaN the way missing values went in training.  A categorical
split sends a category left iff its code is in the split's left set, a category the trees
know (scikit-learn's known-category bitset; in 1.9 every category the encoder saw) but not in
the set right, and anything else (an unseen category, a missing one) the missing-value way.
scikit-learn's classifier ordinal-encodes the pipeline's codes once more
(``_preprocessor``); its left sets and known sets are translated back to the pipeline
encoder's codes at compile time.  Every split is compiled into one table per node, indexed
by a small integer *code* of the row's value: per categorical
feature the category's ordinal code (``len(categories)`` for anything else); per numeric
feature the number of split thresholds below ``x`` over all trees (``bisect_left``), with
``x <= t_k`` iff ``code <= k``, and NaN a code of its own.  A walk is then
``node = table[offset[node] + code[feature[node]]]`` until a leaf, in pure Python for one
row (:meth:`~CompiledTreeModel.explain_row`) and level by level in numpy for a batch
(:meth:`~CompiledTreeModel.explain_columns`).

**Contributions, by the path method of Saabas (``treeinterpreter``; XGBoost's
``approx_contribs``, which weights by hessian cover where we weight by the training sample
count, the only weight scikit-learn keeps).**  Every node gets a value: a leaf its output,
an internal node the count-weighted mean of its children's values, i.e. the tree's mean
output over the training samples that reached it.  Each split on the path of a row credits
the change of value from the node to the child the row takes to the split's feature.
Summed over the path this telescopes to ``leaf - root``, so for every row
``bias + sum(contributions) == margin`` (to rounding), where
``bias = baseline + sum of root values`` is the same for all rows.  scikit-learn's own
``value`` of an internal node is not used: it is the node's Newton step without the
learning rate (0 at the root), which is not on the scale of the leaves.  The method is fast
and exact in sum, but unlike SHAP it depends on the order of the splits (features near the
root get more of the credit).

Terms are numbered like :class:`scoring.compiled.CompiledLinearModel`: each category of each
categorical feature (``industry=software``), one ``=other`` term per categorical feature,
then the numerics and the flags; a categorical feature's contribution is reported under the
row's category, which is what the top factors show.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from junction.core.errors import ModelLoadError
from scoring._ensemble import CompiledEnsemble, FloatArray, mean_values
from scoring._ensemble_format import header
from scoring._sklearn_layout import check_layout, encoder_categories, layout_error
from scoring._tree_format import FORMAT, KIND, TREE_KEYS, TreeArrays, parse
from scoring.calibration import Calibration
from scoring.spec import FeatureSpec

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline


def _bitset_codes(bitset: Any) -> list[int]:
    """The codes set in one of scikit-learn's 256-bit bitsets (8 x uint32)."""
    words = [int(w) for w in bitset]
    return [c for c in range(256) if (words[c >> 5] >> (c & 31)) & 1]


def _inner_layout_kept(clf: Any, n_cat: int, n_features: int) -> bool:
    """Whether the classifier's own category re-encoding keeps the feature order.

    With categorical features, ``HistGradientBoostingClassifier`` ordinal-encodes them again
    (``_preprocessor``) and moves them first; they are first already, so tree feature ``i``
    is row feature ``i``.
    """
    if n_cat == 0:
        return clf.is_categorical_ is None and getattr(clf, "_preprocessor", None) is None
    remapped = getattr(clf, "_is_categorical_remapped", None)
    inner = getattr(clf, "_preprocessor", None)
    return (
        remapped is not None
        and inner is not None
        and list(np.flatnonzero(clf.is_categorical_)) == list(range(n_cat))
        and list(np.flatnonzero(remapped)) == list(range(n_cat))
        and len(remapped) == n_features
    )


def _inner_to_outer(clf: Any, n_cat: int) -> list[list[int]]:
    """Per categorical feature: the classifier's own category code -> the pipeline's code.

    The trees see the codes of the classifier's ``_preprocessor``, an ``OrdinalEncoder`` over
    the pipeline encoder's codes (usually the identity; a missing value, last, is dropped).
    """
    encoder = clf._preprocessor.named_transformers_["encoder"]
    out: list[list[int]] = []
    for cats in encoder.categories_[:n_cat]:
        values = [float(v) for v in cats]
        if values and math.isnan(values[-1]):
            values.pop()
        if any(not v.is_integer() or v < 0 for v in values):
            raise ModelLoadError("the model's category codes are not the encoder's")
        out.append([int(v) for v in values])
    return out


def _check_layout(pipeline: Pipeline, spec: FeatureSpec) -> tuple[Any, Any]:
    """Return the fitted encoder and classifier, checking the pipeline is ``build_trees``'s."""
    # imported here: only compiling a fitted pipeline needs scikit-learn, scoring does not
    from sklearn.ensemble import HistGradientBoostingClassifier

    what = "gradient boosting"
    enc, clf = check_layout(pipeline, spec, HistGradientBoostingClassifier, what)
    n_cat = len(spec.categorical)
    n_features = n_cat + len(spec.numeric) + len(spec.binary)
    if clf.n_trees_per_iteration_ != 1 or not _inner_layout_kept(clf, n_cat, n_features):
        raise layout_error()
    return enc, clf


def _tree_dict(predictor: Any, to_outer: list[list[int]]) -> dict[str, list[Any]]:
    """One tree's node arrays, categorical splits in the pipeline encoder's codes."""
    bitsets = predictor.raw_left_cat_bitsets
    out: dict[str, list[Any]] = {key: [] for key in TREE_KEYS}
    for node in predictor.nodes.tolist():
        record = dict(zip(predictor.nodes.dtype.names, node, strict=True))
        leaf, f = bool(record["is_leaf"]), int(record["feature_idx"])
        cat = bool(record["is_categorical"]) and not leaf
        t = float(record["num_threshold"])
        out["feature"].append(-1 if leaf else f)
        out["threshold"].append(0.0 if leaf or cat else "inf" if t == math.inf else t)
        out["left"].append(0 if leaf else int(record["left"]))
        out["right"].append(0 if leaf else int(record["right"]))
        out["missing_left"].append(bool(record["missing_go_to_left"]) and not leaf)
        out["categorical"].append(cat)
        inner = _bitset_codes(bitsets[int(record["bitset_idx"])]) if cat else []
        out["cat_left"].append(sorted(to_outer[f][k] for k in inner if k < len(to_outer[f])))
        out["value"].append(float(record["value"]))
        out["count"].append(int(record["count"]))
    return out


def compile_pipeline(pipeline: Pipeline, spec: FeatureSpec) -> dict[str, Any]:
    """The plain-JSON form of a fitted ``build_trees`` pipeline (:meth:`CompiledTreeModel.to_dict`).

    Raises:
        ModelLoadError: the pipeline is not one :func:`scoring.pipelines.build_trees` builds,
            or has a category that is not a string.
    """
    enc, clf = _check_layout(pipeline, spec)
    categories = encoder_categories(enc, len(spec.categorical))
    known: list[list[int]] = []
    to_outer: list[list[int]] = []
    if spec.categorical:
        to_outer = _inner_to_outer(clf, len(spec.categorical))
        bitsets, f_idx_map = clf._bin_mapper.make_known_categories_bitsets()
        for f, outer in enumerate(to_outer):
            inner = _bitset_codes(bitsets[f_idx_map[f]])
            known.append(sorted(outer[k] for k in inner if k < len(outer)))
    return header(FORMAT, KIND, spec, categories) | {
        "known": known,
        "baseline": float(np.asarray(clf._baseline_prediction).ravel()[0]),
        "trees": [_tree_dict(p[0], to_outer) for p in clf._predictors],
    }


class CompiledTreeModel(CompiledEnsemble[TreeArrays]):
    """Node tables equivalent to a fitted, optionally calibrated, gradient-boosting pipeline.

    Build it from a fitted pipeline (``CompiledTreeModel(pipeline, spec)``, or
    :meth:`from_calibrated`; both need scikit-learn) or from its plain-JSON form
    (:meth:`from_dict`, does not).  Scoring and contributions are
    :class:`~scoring._ensemble.CompiledEnsemble`'s.

    Args:
        pipeline: the fitted pipeline of :func:`scoring.pipelines.build_trees`.
        spec: the feature spec it was trained on.
        calibration: the compiled calibration of its margin (default: none, the model's own
            logistic).  It is not part of :meth:`to_dict`: ``compiled.json`` keeps the
            calibration beside the model (:mod:`scoring.model_file`).

    Attributes:
        kind: ``trees``.
        baseline: scikit-learn's baseline prediction (the margin before any tree).

    Raises:
        ModelLoadError: the pipeline is not the trees pipeline over ``spec``.
    """

    kind = KIND
    # batch contributions of two trees in one table: scikit-learn's trees are small
    _pair_leaves = True

    def __init__(
        self, pipeline: Pipeline, spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> None:
        self._load(compile_pipeline(pipeline, spec), spec)
        self.calibration = calibration or Calibration.none()

    @classmethod
    def from_calibrated(
        cls, calibrated: CalibratedClassifierCV, spec: FeatureSpec
    ) -> CompiledTreeModel:
        """Compile ``calibrate(pipeline, ...)`` output: its frozen pipeline and its calibration.

        Raises:
            ModelLoadError: not a calibrated trees pipeline over ``spec``.
        """
        fitted = getattr(calibrated, "calibrated_classifiers_", None) or [None]
        frozen = getattr(fitted[0], "estimator", None)
        pipeline = getattr(frozen, "estimator", None)
        if pipeline is None or not hasattr(pipeline, "named_steps"):
            raise ModelLoadError("the calibrated model does not wrap a fitted pipeline")
        return cls(pipeline, spec, calibration=Calibration.from_calibrated(calibrated))

    def _load(self, d: Mapping[str, Any], spec: FeatureSpec) -> None:
        p = self._parsed = parse(d, spec)
        self._setup_base(spec, p.baseline, p.categories)
        n_cat = self._n_cat
        thresholds: list[set[float]] = [set() for _ in range(self._nf - n_cat)]
        for tree in p.trees:
            for f, t, cat in zip(tree.feature, tree.threshold, tree.categorical, strict=True):
                if f >= n_cat and not cat:
                    thresholds[f - n_cat].add(t)
        # codes: categories the trees know -> ordinal code; anything else the "missing" code
        self._setup_codes(
            [
                {cats[c]: c for c in known}
                for cats, known in zip(p.categories, p.known, strict=True)
            ],
            [len(cats) for cats in p.categories],
            [sorted(s) for s in thresholds],
        )
        self._build_tables(p.trees)

    def _node_values(self, tree: TreeArrays) -> list[float]:
        return mean_values(tree, tree.counts)

    def _node_table(self, tree: TreeArrays, i: int, base: int) -> list[int]:
        f = tree.feature[i]
        lo, hi = base + tree.left[i], base + tree.right[i]
        miss = lo if tree.missing_left[i] else hi
        if tree.categorical[i]:
            left, known = set(tree.cat_left[i]), set(self._cat_codes[f].values())
            n = self._cat_missing[f]
            return [lo if c in left else hi if c in known else miss for c in range(n)] + [miss]
        thr = self._num_thr[f - self._n_cat]
        k = bisect_left(thr, tree.threshold[i])  # thr[k] is this node's threshold
        # codes 0..k: x <= thr[k], left; k+1..len(thr): right; then the missing code
        return [lo] * (k + 1) + [hi] * (len(thr) - k) + [miss]

    def _start_margins(self, n: int) -> FloatArray:
        z = np.zeros(n, dtype=np.float64)
        z += self.baseline  # as scikit-learn: a baseline of -0.0 starts at +0.0
        return z

    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values.

        Floats stay Python floats, which :func:`json.dumps` writes with ``repr``: they read
        back bit for bit.  A threshold of ``+inf`` is written as the string ``"inf"``.
        """
        p = self._parsed
        return header(FORMAT, KIND, self.spec, p.categories) | {
            "known": [list(k) for k in p.known],
            "baseline": p.baseline,
            "trees": [
                {
                    "feature": list(t.feature),
                    "threshold": ["inf" if x == math.inf else x for x in t.threshold],
                    "left": list(t.left),
                    "right": list(t.right),
                    "missing_left": list(t.missing_left),
                    "categorical": list(t.categorical),
                    "cat_left": [list(c) for c in t.cat_left],
                    "value": list(t.value),
                    "count": list(t.counts),
                }
                for t in p.trees
            ],
        }
