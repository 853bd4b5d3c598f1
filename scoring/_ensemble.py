"""What the compiled tree ensembles share: node tables, the walks and Saabas contributions.

:class:`CompiledEnsemble` is the base of :class:`scoring.trees.CompiledTreeModel`
(scikit-learn's gradient boosting) and :class:`scoring.xgb.CompiledXgbModel` (XGBoost).  Both
compile every split into a table indexed by a small integer *code* of the row's value:
categories map to codes through a dict, a numeric value to the number of its feature's
thresholds (over all trees) below it, NaN to a code of its own.  A walk is then
``node = table[offset[node] + code[feature[node]]]`` until a leaf: in pure Python for one row
(:meth:`~CompiledEnsemble.explain_row`), level by level in numpy for a batch
(:meth:`~CompiledEnsemble.explain_columns`).  Each split on a row's path credits the change of
the mean output below the node, from the node to the child the row takes, to the split's
feature (the path method of Saabas); summed over the path it telescopes to ``leaf - root``.

What differs, the subclasses give: how a node's table reads the codes
(:meth:`~CompiledEnsemble._node_table`), the node weights of the means
(:meth:`~CompiledEnsemble._node_values`), ``<=`` or ``<`` thresholds (``_bisect_right``),
and doubles throughout or XGBoost's float32 inputs and float32 margin sums (``_float32``,
:meth:`~CompiledEnsemble._start_margins`), so that each scores bit for bit as its library
does.

Terms are numbered like :class:`scoring.compiled.CompiledLinearModel`: each category of each
categorical feature (``industry=software``), one ``=other`` term per categorical feature,
then the numerics and the flags; a categorical feature's contribution is reported under the
row's category, which is what the top factors show.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from scoring._json_checks import F32
from scoring.calibration import Calibration
from scoring.spec import FeatureColumns, FeatureSpec

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


class TreeNodes(Protocol):
    """The node arrays every tree has (root 0, children after their parent, leaves ``-1``)."""

    @property
    def feature(self) -> list[int]: ...
    @property
    def left(self) -> list[int]: ...
    @property
    def right(self) -> list[int]: ...
    @property
    def value(self) -> list[float]: ...


TreeT = TypeVar("TreeT", bound=TreeNodes)


def mean_values(
    tree: TreeNodes, weight: Sequence[float], total: Sequence[float] | None = None
) -> list[float]:
    """Leaf outputs, and for internal nodes the ``weight``-weighted mean of their children.

    The mean divides by ``total[i]`` if given (XGBoost's cover), else by the children's
    summed weights (scikit-learn's sample counts).
    """
    values = list(tree.value)
    # children have higher indexes than their parents: one backward pass fills every node
    for i in range(len(values) - 1, -1, -1):
        if tree.feature[i] >= 0:
            lo, hi = tree.left[i], tree.right[i]
            div = weight[lo] + weight[hi] if total is None else total[i]
            values[i] = (weight[lo] * values[lo] + weight[hi] * values[hi]) / div
    return values


class CompiledEnsemble(ABC, Generic[TreeT]):
    """Node tables of a boosted tree ensemble over a feature spec, and their walks.

    Attributes:
        kind: the model kind of ``compiled.json``.
        spec: the feature spec.
        feature_schema_hash: ``spec.schema_hash``.
        calibration: maps the margin to the probability (not part of ``to_dict``:
            ``compiled.json`` keeps it beside the model, :mod:`scoring.model_file`).
        baseline: the margin before any tree.
        bias: ``baseline`` plus the trees' root values; ``bias + sum(contributions)`` is the
            margin of every row.
        term_names: the name of each term id.
    """

    kind: ClassVar[str]
    # a numeric value's code counts the thresholds <= x (True: trees split on x < t) or < x
    _bisect_right: ClassVar[bool] = False
    # XGBoost's precision: inputs rounded to float32, margins float32 sums rounded after each
    # tree; else doubles throughout (scikit-learn)
    _float32: ClassVar[bool] = False
    # batch contributions of two consecutive trees read one joint table (fewer gathers, but
    # leaves_a * leaves_b rows: for small trees only)
    _pair_leaves: ClassVar[bool] = False
    spec: FeatureSpec
    feature_schema_hash: str
    calibration: Calibration
    baseline: float
    bias: float
    term_names: list[str]

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], spec: FeatureSpec, *, calibration: Calibration | None = None
    ) -> Self:
        """Rebuild a model from its ``to_dict`` output, checking every key, shape and type.

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
        model._load(d, spec)
        model.calibration = calibration or Calibration.none()
        return model

    @abstractmethod
    def _load(self, d: Mapping[str, Any], spec: FeatureSpec) -> None:
        """Validate ``d`` and set every table up (from :meth:`_setup_base` on)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values."""

    @abstractmethod
    def _node_values(self, tree: TreeT) -> list[float]:
        """Every node's mean output over the training rows that reached it (leaves: output)."""

    @abstractmethod
    def _node_table(self, tree: TreeT, i: int, base: int) -> list[int]:
        """Next node (global id) of split node ``i`` for each code of its feature's values."""

    def _start_margins(self, n: int) -> npt.NDArray[np.floating[Any]]:
        """The margins of ``n`` rows before any tree, in the dtype the trees add up in."""
        dtype = np.float32 if self._float32 else np.float64
        return np.full(n, self.baseline, dtype=dtype)

    def _setup_base(self, spec: FeatureSpec, baseline: float, categories: list[list[str]]) -> None:
        """Set the spec, the baseline and the terms (the first step of :meth:`_load`)."""
        self.spec, self.feature_schema_hash = spec, spec.schema_hash
        self.baseline = baseline
        n_cat = len(spec.categorical)
        self._n_cat, self._nf = n_cat, n_cat + len(spec.numeric) + len(spec.binary)
        self._setup_terms(categories)

    def _setup_codes(
        self, cat_codes: list[dict[str, int]], cat_missing: list[int], num_thr: list[list[float]]
    ) -> None:
        """Set how values become codes: per category, per numeric feature its thresholds."""
        self._cat_codes, self._cat_missing = cat_codes, cat_missing
        self._num_thr = num_thr
        self._num_miss = [len(t) + 1 for t in num_thr]
        self._np_thr = [np.asarray(t, dtype=np.float64) for t in num_thr]
        self._bisect = bisect_right if self._bisect_right else bisect_left

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

    def _build_tables(self, trees: Sequence[TreeT]) -> None:
        """The flat node tables of the row walk, the path contributions and the bias."""
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
            values = self._node_values(tree)
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

    def _build_batch_tables(self, trees: Sequence[TreeT], depths: list[int]) -> None:
        """Per-tree arrays for the numpy walk, with tree-local node ids (small, cache-friendly).

        A leaf reads the row of zero codes (index nf) and maps code 0 to itself, so every row
        walks exactly ``depth`` steps.  Each leaf also gets a tree-local leaf number indexing
        its value and its contributions; with ``_pair_leaves`` the contributions of two
        consecutive trees are summed in one table indexed by the pair of leaf numbers, which
        halves the gathers of ``(n, nf)`` rows.
        """
        nf = self._nf
        self._np_trees: list[tuple[IntArray, IntArray, IntArray, int, IntArray]] = []
        self._np_values: list[npt.NDArray[np.floating[Any]]] = []
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
            contrib = np.zeros((len(leaves), nf), dtype=np.float64)
            for j, i in enumerate(leaves):
                for f, v in self._pairs[base + i]:
                    contrib[j, f] = v
            dtype = np.float32 if self._float32 else np.float64
            self._np_trees.append((feat, off, table, depths[t], leaf_no))
            self._np_values.append(np.array([tree.value[i] for i in leaves], dtype=dtype))
            leaf_contribs.append(contrib)
        # (tree, leaves of the next tree or -1 for a tree alone, contributions by leaf number)
        self._np_pairs: list[tuple[int, int, FloatArray]] = []
        step = 2 if self._pair_leaves else 1
        for t in range(0, len(trees), step):
            if step == 1 or t + 1 == len(trees):
                self._np_pairs.append((t, -1, leaf_contribs[t]))
                continue
            a, b = leaf_contribs[t], leaf_contribs[t + 1]
            joint = (a[:, None, :] + b[None, :, :]).reshape(-1, nf)
            self._np_pairs.append((t, b.shape[0], joint))

    @property
    def n_trees(self) -> int:
        """How many trees the model adds up."""
        return len(self._roots)

    def _row_codes(self, row: Sequence[Any]) -> list[int]:
        n_cat = self._n_cat
        codes = [
            lookup.get(v, miss)
            for lookup, miss, v in zip(self._cat_codes, self._cat_missing, row[:n_cat], strict=True)
        ]
        # array("f") rounds to float32 as XGBoost's input copy does (overflow gives +-inf)
        xs = array("f", row[n_cat:]) if self._float32 else row[n_cat:]
        bisect = self._bisect
        for thr, miss, x in zip(self._num_thr, self._num_miss, xs, strict=True):
            codes.append(miss if x != x else bisect(thr, x))
        return codes

    def _walk_row(self, row: Sequence[Any], contrib: list[float] | None) -> float:
        """The margin of one row; adds the path contributions to ``contrib`` if given."""
        codes = self._row_codes(row)
        feat, off, table, leaf_value, pairs = (
            self._feat, self._off, self._table, self._leaf_value, self._pairs
        )  # fmt: skip
        f32, pack, unpack = self._float32, F32.pack, F32.unpack
        z = self.baseline
        for i in self._roots:
            f = feat[i]
            while f >= 0:
                i = table[off[i] + codes[f]]
                f = feat[i]
            if f32:
                (z,) = unpack(pack(z + leaf_value[i]))  # float32 addition, as XGBoost sums
            else:
                z += leaf_value[i]  # one tree at a time, as scikit-learn sums
            if contrib is not None:
                for f, v in pairs[i]:
                    contrib[f] += v
        return z

    def margin_row(self, row: Sequence[Any]) -> float:
        """The raw margin of one feature row (the library's ``decision_function``), pure Python."""
        return self._walk_row(row, None)

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
        for f, (lookup, miss) in enumerate(zip(self._cat_codes, self._cat_missing, strict=True)):
            codes[f] = list(map(lookup.get, cols.categorical[f], repeat(miss, n)))
        if self._nf > self._n_cat:
            values = np.concatenate([cols.numeric, cols.binary])
            if self._float32:
                with np.errstate(over="ignore"):
                    values = values.astype(np.float32).astype(np.float64)
            side: Literal["left", "right"] = "right" if self._bisect_right else "left"
            for j, (thr, miss) in enumerate(zip(self._np_thr, self._num_miss, strict=True)):
                x = values[j]
                row = np.searchsorted(thr, x, side=side)
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
        z = self._start_margins(n)
        for t, (feat, off, table, depth, leaf_no) in enumerate(self._np_trees):
            feat_n = feat * n
            idx = np.zeros(n, dtype=np.intp)
            for _ in range(depth):
                # ndarray.take: the same gathers as indexing, with less overhead per call
                idx = table.take(off.take(idx) + flat.take(feat_n.take(idx) + rows))
            leaf = leaf_no.take(idx)
            out[t] = leaf
            # one tree at a time, in the library's order and dtype: the margins are the same
            z += self._np_values[t].take(leaf)
        return out, z.astype(np.float64, copy=False)

    def explain_columns(self, cols: FeatureColumns) -> tuple[FloatArray, FloatArray, IntArray]:
        """Return, for a batch, the raw margins ``(n,)``, contributions ``(n, nf)`` and term ids."""
        leaves, z = self._walk(cols)
        n = leaves.shape[1]
        contrib = np.zeros((n, self._nf), dtype=np.float64)
        for t, n_next, table in self._np_pairs:
            contrib += table[leaves[t] if n_next < 0 else leaves[t] * n_next + leaves[t + 1]]
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
        return f"{type(self).__name__}({self.n_trees} trees, {self.calibration.method})"
