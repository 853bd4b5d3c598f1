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

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import ConfigError, ModelLoadError
from scoring._xgb_format import _F32, FORMAT, KIND, ParsedXgb, XgbTree, f32, parse
from scoring.calibration import Calibration
from scoring.spec import FeatureColumns, FeatureSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

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
        "categories": [list(c) for c in categories],
        "base_margin": _base_margin(params["base_score"]),
        "trees": [_tree_dict(t) for t in trees],
    }


def _node_values(tree: XgbTree) -> list[float]:
    """Leaf outputs, and for internal nodes the cover-weighted mean of their children."""
    values = list(tree.value)
    cover = tree.cover
    for i in range(len(values) - 1, -1, -1):  # children follow parents: one backward pass
        if tree.feature[i] >= 0:
            lo, hi = tree.left[i], tree.right[i]
            values[i] = (cover[lo] * values[lo] + cover[hi] * values[hi]) / cover[i]
    return values


class CompiledXgbModel:
    """Node tables equivalent to a fitted, optionally calibrated, XGBoost pipeline.

    Build it with :meth:`from_pipeline` (needs scikit-learn and XGBoost) or :meth:`from_dict`
    (needs neither).

    Attributes:
        kind: ``xgb_trees``.
        spec: the feature spec.
        feature_schema_hash: ``spec.schema_hash``.
        calibration: maps the margin to the probability (not part of :meth:`to_dict`:
            ``compiled.json`` keeps it beside the model, :mod:`scoring.model_file`).
        baseline: the base margin (float32), the margin before any tree.
        bias: ``baseline`` plus the trees' root values; ``bias + sum(contributions)`` is the
            margin of every row.
        term_names: the name of each term id.
    """

    kind = KIND
    spec: FeatureSpec
    feature_schema_hash: str
    calibration: Calibration
    baseline: float
    bias: float
    term_names: list[str]

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

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> CompiledXgbModel:
        """Rebuild a model from :meth:`to_dict` output, checking every key, shape and type.

        Raises:
            ModelLoadError: ``d`` is malformed (the error's context names the key) or was
                made for another feature spec.
        """
        model = cls.__new__(cls)
        model._setup(parse(d, spec), spec)
        model.calibration = calibration or Calibration.none()
        return model

    def _setup(self, p: ParsedXgb, spec: FeatureSpec) -> None:
        self.spec, self.feature_schema_hash = spec, spec.schema_hash
        self.baseline = p.base_margin
        self._parsed = p
        n_cat = len(spec.categorical)
        nf = n_cat + len(spec.numeric) + len(spec.binary)
        self._n_cat, self._nf = n_cat, nf
        self._setup_terms(p.categories)
        thresholds: list[set[float]] = [set() for _ in range(nf)]
        for tree in p.trees:
            for f, t in zip(tree.feature, tree.threshold, strict=True):
                if f >= 0:
                    thresholds[f].add(t)
        self._thr = [sorted(s) for s in thresholds]
        self._miss = [len(t) + 1 for t in self._thr]
        # a category's code: where its ordinal code falls among the thresholds; others: missing
        self._cat_codes = [
            {c: bisect_right(self._thr[f], float(k)) for k, c in enumerate(cats)}
            for f, cats in enumerate(p.categories)
        ]
        self._num_thr = self._thr[n_cat:]
        self._num_miss = self._miss[n_cat:]
        self._np_thr = [np.asarray(t, dtype=np.float64) for t in self._num_thr]
        self._build_tables(p.trees)

    def _setup_terms(self, categories: list[list[str]]) -> None:
        spec = self.spec
        names: list[str] = []
        self._cat_terms: list[dict[str, int]] = []
        for feature, cats in zip(spec.categorical, categories, strict=True):
            self._cat_terms.append({c: len(names) + i for i, c in enumerate(cats)})
            names += [f"{feature}={c}" for c in cats]
        self._other_terms = list(range(len(names), len(names) + self._n_cat))
        names += [f"{feature}=other" for feature in spec.categorical]
        self._fixed_terms = np.arange(len(names), len(names) + self._nf - self._n_cat)
        names += [*spec.numeric, *spec.binary]
        self.term_names = names
        self._cat_names = [{c: names[t] for c, t in terms.items()} for terms in self._cat_terms]
        self._other_names = [names[t] for t in self._other_terms]
        self._fixed_names = names[len(names) - (self._nf - self._n_cat) :]

    def _node_table(self, tree: XgbTree, i: int, base: int) -> list[int]:
        """Next node (global id) of node ``i`` for each code of its feature's values."""
        thr = self._thr[tree.feature[i]]
        lo, hi = base + tree.left[i], base + tree.right[i]
        k = bisect_left(thr, tree.threshold[i])  # thr[k] is this node's threshold
        # codes 0..k: float32(x) < thr[k], left; k+1..len(thr): right; then the missing code
        return [lo] * (k + 1) + [hi] * (len(thr) - k) + [lo if tree.default_left[i] else hi]

    def _build_tables(self, trees: list[XgbTree]) -> None:
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

    def _build_batch_tables(self, trees: list[XgbTree], depths: list[int]) -> None:
        """Per-tree arrays for the numpy walk, with tree-local node ids.

        A leaf reads the row of zero codes (index nf) and maps code 0 to itself, so every row
        walks exactly ``depth`` steps; each leaf gets a tree-local number indexing its value
        and its contributions.
        """
        nf = self._nf
        self._np_trees: list[tuple[IntArray, IntArray, IntArray, int, IntArray]] = []
        self._np_values: list[npt.NDArray[np.float32]] = []
        self._np_contribs: list[FloatArray] = []
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
            contrib = np.zeros((len(leaves), nf), dtype=np.float64)
            for j, i in enumerate(leaves):
                for f, v in self._pairs[base + i]:
                    contrib[j, f] = v
            self._np_trees.append((feat, off, table, depths[t], leaf_no))
            self._np_values.append(np.array([tree.value[i] for i in leaves], dtype=np.float32))
            self._np_contribs.append(contrib)

    @property
    def n_trees(self) -> int:
        """How many trees the model adds up."""
        return len(self._roots)

    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values."""
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

    def _row_codes(self, row: Sequence[Any]) -> list[int]:
        n_cat = self._n_cat
        codes = [
            lookup.get(v, miss)
            for lookup, miss, v in zip(self._cat_codes, self._miss, row[:n_cat], strict=False)
        ]
        # array("f") rounds to float32 as XGBoost's input copy does (overflow gives +-inf)
        xs = array("f", row[n_cat:])
        for thr, miss, x in zip(self._num_thr, self._num_miss, xs, strict=True):
            codes.append(miss if x != x else bisect_right(thr, x))
        return codes

    def margin_row(self, row: Sequence[Any]) -> float:
        """The raw margin of one feature row (XGBoost's ``output_margin``), pure Python."""
        return self._walk_row(row, None)

    def _walk_row(self, row: Sequence[Any], contrib: list[float] | None) -> float:
        codes = self._row_codes(row)
        feat, off, table, leaf_value = self._feat, self._off, self._table, self._leaf_value
        pack, unpack = _F32.pack, _F32.unpack
        z = self.baseline
        for i in self._roots:
            f = feat[i]
            while f >= 0:
                i = table[off[i] + codes[f]]
                f = feat[i]
            (z,) = unpack(pack(z + leaf_value[i]))  # float32 addition, as XGBoost sums
            if contrib is not None:
                for f, v in self._pairs[i]:
                    contrib[f] += v
        return float(z)

    def explain_row(self, row: Sequence[Any]) -> tuple[float, list[tuple[str, float]]]:
        """Return the raw margin of one feature row and every feature's ``(term, contribution)``.

        The terms are in feature order; a categorical feature's is named after the row's
        category (``f=other`` for one the encoder never saw).  Pure Python.
        """
        contrib = [0.0] * self._nf
        z = self._walk_row(row, contrib)
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
        for f, lookup in enumerate(self._cat_codes):
            codes[f] = list(map(lookup.get, cols.categorical[f], repeat(self._miss[f], n)))
        if self._nf > self._n_cat:
            values = np.concatenate([cols.numeric, cols.binary])
            with np.errstate(over="ignore"):
                x32 = values.astype(np.float32).astype(np.float64)
            for j, (thr, miss) in enumerate(zip(self._np_thr, self._num_miss, strict=True)):
                x = x32[j]
                row = np.searchsorted(thr, x, side="right")
                nan = np.isnan(x)
                if nan.any():
                    row[nan] = miss
                codes[self._n_cat + j] = row
        return codes

    def _walk(self, cols: FeatureColumns) -> tuple[IntArray, FloatArray]:
        """Leaf numbers ``(n_trees, n)`` and raw margins ``(n,)`` of a batch."""
        codes = self._codes(cols)
        n = codes.shape[1]
        flat = codes.ravel()
        rows = np.arange(n, dtype=np.intp)
        out = np.empty((len(self._np_trees), n), dtype=np.intp)
        z = np.full(n, self.baseline, dtype=np.float32)
        for t, (feat, off, table, depth, leaf_no) in enumerate(self._np_trees):
            feat_n = feat * n
            idx = np.zeros(n, dtype=np.intp)
            for _ in range(depth):
                idx = table.take(off.take(idx) + flat.take(feat_n.take(idx) + rows))
            leaf = leaf_no.take(idx)
            out[t] = leaf
            z += self._np_values[t].take(leaf)  # float32, tree by tree, as XGBoost
        return out, z.astype(np.float64)

    def explain_columns(self, cols: FeatureColumns) -> tuple[FloatArray, FloatArray, IntArray]:
        """Return, for a batch, the raw margins ``(n,)``, contributions ``(n, nf)`` and term ids."""
        leaves, z = self._walk(cols)
        n = leaves.shape[1]
        contrib = np.zeros((n, self._nf), dtype=np.float64)
        for t, table in enumerate(self._np_contribs):
            contrib += table[leaves[t]]
        terms = np.empty((n, self._nf), dtype=np.intp)
        for f in range(self._n_cat):
            lookup, other = self._cat_terms[f], self._other_terms[f]
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
        return f"CompiledXgbModel({self.n_trees} trees, {self.calibration.method})"


__all__ = [
    "INSTALL_HINT",
    "CompiledXgbModel",
    "compile_booster",
    "f32",
    "require_xgboost",
]
