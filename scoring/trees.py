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
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import ModelLoadError
from scoring._tree_format import FORMAT, KIND, TREE_KEYS, ParsedTrees, TreeArrays, parse
from scoring.calibration import Calibration
from scoring.spec import FeatureColumns, FeatureSpec

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


def _bitset_codes(bitset: Any) -> list[int]:
    """The codes set in one of scikit-learn's 256-bit bitsets (8 x uint32)."""
    words = [int(w) for w in bitset]
    return [c for c in range(256) if (words[c >> 5] >> (c & 31)) & 1]


def _is_passthrough(est: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    # a fitted ColumnTransformer keeps "passthrough" as an identity FunctionTransformer
    return est == "passthrough" or (isinstance(est, FunctionTransformer) and est.func is None)


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


def _encodes_unknown_as_nan(enc: Any) -> bool:
    from sklearn.preprocessing import OrdinalEncoder

    return (
        isinstance(enc, OrdinalEncoder)
        and enc.handle_unknown == "use_encoded_value"
        and math.isnan(enc.unknown_value)
        and math.isnan(enc.encoded_missing_value)
    )


def _check_layout(pipeline: Pipeline, spec: FeatureSpec) -> tuple[Any, Any]:
    """Return the fitted encoder and classifier, checking the pipeline is ``build_trees``'s."""
    # imported here: only compiling a fitted pipeline needs scikit-learn, scoring does not
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier

    pre, clf = pipeline.named_steps.get("pre"), pipeline.named_steps.get("clf")
    if not isinstance(pre, ColumnTransformer) or not isinstance(
        clf, HistGradientBoostingClassifier
    ):
        raise ModelLoadError("the model is not a ColumnTransformer + gradient boosting pipeline")
    n_cat, n_num = len(spec.categorical), len(spec.numeric)
    n_features = n_cat + n_num + len(spec.binary)
    layout = {name: (est, list(cols)) for name, est, cols in pre.transformers_}
    expected = {
        "cat": list(range(n_cat)),
        "num": list(range(n_cat, n_cat + n_num)),
        "bin": list(range(n_cat + n_num, n_features)),
    }
    enc = layout.get("cat", (None, []))[0]
    ok = (
        all(layout.get(k, (None, None))[1] == v for k, v in expected.items())
        and all(_is_passthrough(layout[k][0]) for k in ("num", "bin") if expected[k])
        and all(e == "drop" or not c for k, (e, c) in layout.items() if k not in expected)
        and (not n_cat or _encodes_unknown_as_nan(enc))
        and clf.n_trees_per_iteration_ == 1
        and list(clf.classes_) == [0, 1]
        and clf.n_features_in_ == n_features
        and _inner_layout_kept(clf, n_cat, n_features)
    )  # fmt: skip
    if not ok:
        raise ModelLoadError("the model's column layout does not match its feature spec")
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
    categories: list[list[str]] = []
    for cats in enc.categories_ if spec.categorical else []:
        values = list(cats)
        # a missing value seen in training sorts last and encodes to NaN, as unknown ones do
        while values and not isinstance(values[-1], str) and values[-1] != values[-1]:
            values.pop()
        if not all(isinstance(v, str) for v in values):
            raise ModelLoadError("the model's categories are not all strings")
        categories.append(values)
    known: list[list[int]] = []
    to_outer: list[list[int]] = []
    if spec.categorical:
        to_outer = _inner_to_outer(clf, len(spec.categorical))
        bitsets, f_idx_map = clf._bin_mapper.make_known_categories_bitsets()
        for f, outer in enumerate(to_outer):
            inner = _bitset_codes(bitsets[f_idx_map[f]])
            known.append(sorted(outer[k] for k in inner if k < len(outer)))
    return {
        "format": FORMAT,
        "kind": KIND,
        "spec": spec.to_dict(),
        "feature_schema_hash": spec.schema_hash,
        "features": {
            "categorical": list(spec.categorical),
            "numeric": list(spec.numeric),
            "binary": list(spec.binary),
        },
        "categories": categories,
        "known": known,
        "baseline": float(np.asarray(clf._baseline_prediction).ravel()[0]),
        "trees": [_tree_dict(p[0], to_outer) for p in clf._predictors],
    }


def _node_values(tree: TreeArrays) -> list[float]:
    """Leaf outputs, and for internal nodes the count-weighted mean of their children."""
    values = list(tree.value)
    count = tree.counts
    # children have higher indexes than their parents: one backward pass fills every node
    for i in range(len(values) - 1, -1, -1):
        if tree.feature[i] >= 0:
            lo, hi = tree.left[i], tree.right[i]
            values[i] = (count[lo] * values[lo] + count[hi] * values[hi]) / (count[lo] + count[hi])
    return values


class CompiledTreeModel:
    """Node tables equivalent to a fitted, optionally calibrated, gradient-boosting pipeline.

    Build it from a fitted pipeline (``CompiledTreeModel(pipeline, spec)``, or
    :meth:`from_calibrated`; both need scikit-learn) or from its plain-JSON form
    (:meth:`from_dict`, does not).

    Args:
        pipeline: the fitted pipeline of :func:`scoring.pipelines.build_trees`.
        spec: the feature spec it was trained on.
        calibration: the compiled calibration of its margin (default: none, the model's own
            logistic).  It is not part of :meth:`to_dict`: ``compiled.json`` keeps the
            calibration beside the model (:mod:`scoring.model_file`).

    Attributes:
        kind: ``trees``.
        spec: the feature spec.
        feature_schema_hash: ``spec.schema_hash``.
        calibration: maps the margin to the probability.
        baseline: scikit-learn's baseline prediction (the margin before any tree).
        bias: ``baseline`` plus the trees' root values; ``bias + sum(contributions)`` is the
            margin of every row.
        term_names: the name of each term id.

    Raises:
        ModelLoadError: the pipeline is not the trees pipeline over ``spec``.
    """

    kind = KIND
    spec: FeatureSpec
    feature_schema_hash: str
    calibration: Calibration
    baseline: float
    bias: float
    term_names: list[str]

    def __init__(
        self, pipeline: Pipeline, spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> None:
        self._setup(parse(compile_pipeline(pipeline, spec), spec), spec)
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

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> CompiledTreeModel:
        """Rebuild a model from :meth:`to_dict` output, checking every key, shape and type.

        Args:
            d: the model's dict (untrusted: from disk).
            spec: the feature spec the model must have been made for.
            calibration: the calibration that travels beside the model (``compiled.json``
                keeps it apart, :mod:`scoring.model_file`).

        Raises:
            ModelLoadError: ``d`` is malformed (the error's context names the key) or was
                made for another feature spec.
        """
        model = cls.__new__(cls)
        model._setup(parse(d, spec), spec)
        model.calibration = calibration or Calibration.none()
        return model

    def _setup(self, p: ParsedTrees, spec: FeatureSpec) -> None:
        """Derive every lookup from the validated numbers (both constructors end here)."""
        self.spec, self.feature_schema_hash = spec, spec.schema_hash
        self.baseline = p.baseline
        self._parsed = p
        n_cat = len(spec.categorical)
        nf = n_cat + len(spec.numeric) + len(spec.binary)
        self._n_cat, self._nf = n_cat, nf
        self._setup_terms(p.categories)
        # codes: categories the trees know -> ordinal code; anything else the "missing" code
        self._cat_codes = [
            {cats[c]: c for c in known} for cats, known in zip(p.categories, p.known, strict=True)
        ]
        self._cat_missing = [len(cats) for cats in p.categories]
        thresholds: list[set[float]] = [set() for _ in range(nf - n_cat)]
        for tree in p.trees:
            for f, t, cat in zip(tree.feature, tree.threshold, tree.categorical, strict=True):
                if f >= n_cat and not cat:
                    thresholds[f - n_cat].add(t)
        self._thr = [sorted(s) for s in thresholds]
        self._num_missing = [len(t) + 1 for t in self._thr]
        self._build_tables(p.trees)

    def _setup_terms(self, categories: list[list[str]]) -> None:
        spec = self.spec
        names: list[str] = []
        self._cat_terms: list[dict[str, int]] = []
        for feature, cats in zip(spec.categorical, categories, strict=True):
            self._cat_terms.append({c: len(names) + i for i, c in enumerate(cats)})
            names += [f"{feature}={c}" for c in cats]
        self._other_terms = np.arange(len(names), len(names) + self._n_cat, dtype=np.intp)
        names += [f"{feature}=other" for feature in spec.categorical]
        self._fixed_terms = np.arange(len(names), len(names) + self._nf - self._n_cat)
        names += [*spec.numeric, *spec.binary]
        self.term_names = names
        self._cat_names = [{c: names[t] for c, t in terms.items()} for terms in self._cat_terms]
        self._other_names = [names[t] for t in self._other_terms.tolist()]
        self._fixed_names = names[len(names) - (self._nf - self._n_cat) :]

    def _node_table(self, tree: TreeArrays, i: int, base: int) -> list[int]:
        """Next node (global id) of node ``i`` for each code of its feature's values."""
        f = tree.feature[i]
        lo, hi = base + tree.left[i], base + tree.right[i]
        miss = lo if tree.missing_left[i] else hi
        if tree.categorical[i]:
            left, known = set(tree.cat_left[i]), self._cat_codes[f].values()
            known_set = set(known)
            n = self._cat_missing[f]
            return [lo if c in left else hi if c in known_set else miss for c in range(n)] + [miss]
        thr = self._thr[f - self._n_cat]
        k = bisect_left(thr, tree.threshold[i])  # thr[k] is this node's threshold
        return [lo] * (k + 1) + [hi] * (len(thr) - k) + [miss]

    def _build_tables(self, trees: list[TreeArrays]) -> None:
        feat: list[int] = []
        off: list[int] = []
        table: list[int] = []
        leaf_value: list[float] = []
        pairs: list[tuple[tuple[int, float], ...]] = []
        roots: list[int] = []
        depths: list[int] = []
        bias = self.baseline
        for tree in trees:
            base = len(feat)
            roots.append(base)
            values = _node_values(tree)
            bias += values[0]
            # per node: the summed value changes of its path, by feature (leaves keep theirs)
            path: list[dict[int, float]] = [{}] * len(values)
            depth = [0] * len(values)
            for i, f in enumerate(tree.feature):
                off.append(len(table))
                feat.append(f)
                leaf_value.append(tree.value[i])
                if f < 0:
                    table.append(base + i)  # a leaf leads to itself (numpy walk)
                    pairs.append(tuple(sorted(path[i].items())))
                    continue
                table += self._node_table(tree, i, base)
                pairs.append(())
                for child in (tree.left[i], tree.right[i]):
                    step = dict(path[i])
                    step[f] = step.get(f, 0.0) + (values[child] - values[i])
                    path[child] = step
                    depth[child] = depth[i] + 1
            depths.append(max(depth))
        self.bias = bias
        self._feat, self._off, self._table = feat, off, table
        self._leaf_value, self._pairs, self._roots = leaf_value, pairs, roots
        self._build_batch_tables(trees, depths)

    def _build_batch_tables(self, trees: list[TreeArrays], depths: list[int]) -> None:
        """Per-tree arrays for the numpy walk, with tree-local node ids (small, cache-friendly).

        A leaf reads the row of zero codes (index nf) and maps code 0 to itself, so every row
        walks exactly ``depth`` steps.  Each leaf also gets a tree-local leaf number; the
        contributions of two consecutive trees are summed in one table indexed by the pair of
        leaf numbers, which halves the gathers of ``(n, nf)`` rows.
        """
        nf = self._nf
        self._np_trees: list[tuple[IntArray, IntArray, IntArray, int, IntArray, FloatArray]] = []
        leaf_contribs: list[FloatArray] = []
        for t, tree in enumerate(trees):
            base = self._roots[t]
            n_nodes = len(tree.feature)
            feat = np.array([f if f >= 0 else nf for f in tree.feature], dtype=np.intp)
            start = self._off[base]
            end = self._off[base + n_nodes] if base + n_nodes < len(self._off) else len(self._table)
            off = np.array(self._off[base : base + n_nodes], dtype=np.intp) - start
            table = np.array(self._table[start:end], dtype=np.intp) - base
            leaves = [i for i, f in enumerate(tree.feature) if f < 0]
            leaf_no = np.zeros(n_nodes, dtype=np.intp)
            leaf_no[leaves] = np.arange(len(leaves))
            value = np.array([tree.value[i] for i in leaves], dtype=np.float64)
            contrib = np.zeros((len(leaves), nf), dtype=np.float64)
            for j, i in enumerate(leaves):
                for f, v in self._pairs[base + i]:
                    contrib[j, f] = v
            self._np_trees.append((feat, off, table, depths[t], leaf_no, value))
            leaf_contribs.append(contrib)
        self._np_pairs: list[tuple[int, int, FloatArray]] = []
        for t in range(0, len(trees), 2):
            if t + 1 == len(trees):
                self._np_pairs.append((t, -1, leaf_contribs[t]))
                continue
            a, b = leaf_contribs[t], leaf_contribs[t + 1]
            joint = (a[:, None, :] + b[None, :, :]).reshape(-1, nf)
            self._np_pairs.append((t, b.shape[0], joint))

    @property
    def n_trees(self) -> int:
        """How many trees the model adds up."""
        return len(self._roots)

    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values.

        Floats stay Python floats, which :func:`json.dumps` writes with ``repr``: they read
        back bit for bit.  A threshold of ``+inf`` is written as the string ``"inf"``.
        """
        p = self._parsed
        return {
            "format": FORMAT,
            "kind": KIND,
            "spec": self.spec.to_dict(),
            "feature_schema_hash": self.feature_schema_hash,
            "features": {
                "categorical": list(self.spec.categorical),
                "numeric": list(self.spec.numeric),
                "binary": list(self.spec.binary),
            },
            "categories": [list(c) for c in p.categories],
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

    def _row_codes(self, row: Sequence[Any]) -> list[int]:
        n_cat = self._n_cat
        codes = [
            lookup.get(v, miss)
            for lookup, miss, v in zip(self._cat_codes, self._cat_missing, row[:n_cat], strict=True)
        ]
        for thr, miss, x in zip(self._thr, self._num_missing, row[n_cat:], strict=True):
            codes.append(miss if x != x else bisect_left(thr, x))
        return codes

    def margin_row(self, row: Sequence[Any]) -> float:
        """The raw margin of one feature row (scikit-learn's ``decision_function``)."""
        codes = self._row_codes(row)
        feat, off, table, leaf_value = self._feat, self._off, self._table, self._leaf_value
        z = self.baseline
        for i in self._roots:
            f = feat[i]
            while f >= 0:
                i = table[off[i] + codes[f]]
                f = feat[i]
            z += leaf_value[i]
        return z

    def explain_row(self, row: Sequence[Any]) -> tuple[float, list[tuple[str, float]]]:
        """Return the raw margin of one feature row and every feature's ``(term, contribution)``.

        The terms are in feature order; a categorical feature's is named after the row's
        category (``f=other`` for one the encoder never saw).  Pure Python.
        """
        codes = self._row_codes(row)
        feat, off, table, leaf_value, pairs = (
            self._feat, self._off, self._table, self._leaf_value, self._pairs
        )  # fmt: skip
        contrib = [0.0] * self._nf
        z = self.baseline
        for i in self._roots:
            f = feat[i]
            while f >= 0:
                i = table[off[i] + codes[f]]
                f = feat[i]
            z += leaf_value[i]
            for f, v in pairs[i]:
                contrib[f] += v
        n_cat = self._n_cat
        terms = [
            (names.get(v, other), c)
            for names, other, v, c in zip(
                self._cat_names, self._other_names, row[:n_cat], contrib, strict=False
            )
        ]
        terms += zip(self._fixed_names, contrib[n_cat:], strict=True)
        return z, terms

    def _codes(self, cols: FeatureColumns) -> IntArray:
        """``(nf + 1, n)`` codes of a batch; the last row (zeros) is the one leaves read."""
        n = cols.numeric.shape[1]
        codes = np.zeros((self._nf + 1, n), dtype=np.intp)
        for f, (lookup, miss) in enumerate(zip(self._cat_codes, self._cat_missing, strict=True)):
            codes[f] = list(map(lookup.get, cols.categorical[f], repeat(miss, n)))
        values = np.concatenate([cols.numeric, cols.binary]) if self._nf > self._n_cat else None
        for j, (thr, miss) in enumerate(zip(self._thr, self._num_missing, strict=True)):
            assert values is not None
            x = values[j]
            row = np.searchsorted(np.asarray(thr, dtype=np.float64), x, side="left")
            nan = np.isnan(x)
            if nan.any():
                row[nan] = miss
            codes[self._n_cat + j] = row
        return codes

    def leaves(self, cols: FeatureColumns) -> IntArray:
        """The tree-local leaf number each row reaches in each tree, shape ``(n_trees, n)``."""
        return self._walk(cols)[0]

    def _walk(self, cols: FeatureColumns) -> tuple[IntArray, FloatArray]:
        """Leaf numbers ``(n_trees, n)`` and raw margins ``(n,)`` of a batch."""
        codes = self._codes(cols)
        n = codes.shape[1]
        flat = codes.ravel()
        rows = np.arange(n, dtype=np.intp)
        out = np.empty((len(self._np_trees), n), dtype=np.intp)
        z = np.zeros(n, dtype=np.float64)
        z += self.baseline
        for t, (feat, off, table, depth, leaf_no, value) in enumerate(self._np_trees):
            feat_n = feat * n
            idx = np.zeros(n, dtype=np.intp)
            for _ in range(depth):
                # ndarray.take: the same gathers as indexing, with less overhead per call
                idx = table.take(off.take(idx) + flat.take(feat_n.take(idx) + rows))
            leaf = leaf_no.take(idx)
            out[t] = leaf
            # one tree at a time, in scikit-learn's order: the margins are the same doubles
            z += value.take(leaf)
        return out, z

    def explain_columns(self, cols: FeatureColumns) -> tuple[FloatArray, FloatArray, IntArray]:
        """Return, for a batch, the raw margins ``(n,)``, contributions ``(n, nf)`` and term ids."""
        leaves, z = self._walk(cols)
        n = leaves.shape[1]
        contrib = np.zeros((n, self._nf), dtype=np.float64)
        for t, n_next, table in self._np_pairs:
            contrib += table[leaves[t] if n_next < 0 else leaves[t] * n_next + leaves[t + 1]]
        terms = np.empty((n, self._nf), dtype=np.intp)
        for f in range(self._n_cat):
            lookup, other = self._cat_terms[f], int(self._other_terms[f])
            terms[:, f] = list(map(lookup.get, cols.categorical[f], repeat(other, n)))
        terms[:, self._n_cat :] = self._fixed_terms
        return z, contrib, terms

    def predict_one(self, row: Sequence[Any]) -> float:
        """The calibrated probability of one feature row."""
        return self.calibration.apply_one(self.margin_row(row))

    def predict_columns(self, cols: FeatureColumns) -> FloatArray:
        """The calibrated probabilities of a batch."""
        z, _, _ = self.explain_columns(cols)
        return self.calibration.apply(z)

    def __repr__(self) -> str:
        return f"CompiledTreeModel({self.n_trees} trees, {self.calibration.method})"
