"""Validation of the plain-JSON form of a compiled tree model (``compiled.json``, kind ``trees``).

:func:`parse` checks every key, type, length and cross-reference of a dict written by
:meth:`scoring.trees.CompiledTreeModel.to_dict`.  The dict comes from disk, so it is treated
as untrusted: anything off raises :class:`~junction.core.errors.ModelLoadError` naming the
offending key, never an ``IndexError`` deep inside a tree walk or an endless loop.

Each tree is a set of node arrays in scikit-learn's order (the root is node 0, every child has
a higher index than its parent, so the nodes form one tree), with leaves marked by feature
``-1``.  A numeric threshold of ``+inf`` (scikit-learn's "split on missing values") is written
as the string ``"inf"``, which JSON has no number for.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

from scoring import _ensemble_format as frame
from scoring._json_checks import Checks
from scoring.spec import FeatureSpec

FORMAT = "junction.compiled-tree-model.v1"
KIND = "trees"
MAX_TREES = 10_000
MAX_NODES = 100_000
MAX_CATEGORIES = 255  # HistGradientBoosting's own limit (max_bins) per categorical feature
TREE_KEYS = (
    "feature",
    "threshold",
    "left",
    "right",
    "missing_left",
    "categorical",
    "cat_left",
    "value",
    "count",
)
TOP_KEYS = frame.HEADER_KEYS | {"known", "baseline", "trees"}


class TreeArrays(NamedTuple):
    """The nodes of one tree; entries of leaves other than value and count are unused."""

    feature: list[int]  # -1 for a leaf
    threshold: list[float]  # numeric splits: go left iff x <= threshold
    left: list[int]
    right: list[int]
    missing_left: list[bool]  # NaN, unknown or missing category goes left
    categorical: list[bool]
    cat_left: list[list[int]]  # categorical splits: the category codes that go left
    value: list[float]  # leaves: the tree's output (learning rate applied)
    counts: list[int]  # training samples that reached the node (JSON key: count)


class ParsedTrees(NamedTuple):
    """The numbers of a valid compiled tree model."""

    categories: list[list[str]]  # per categorical feature: code -> category
    known: list[list[int]]  # per categorical feature: codes the trees know
    baseline: float
    trees: list[TreeArrays]


_CHECKS = Checks("the compiled tree model is malformed")
bad = _CHECKS.bad


def _codes(value: Any, key: str, n_codes: int) -> list[int]:
    codes = [_CHECKS.integer(c, key, 0, n_codes - 1) for c in _CHECKS.array(value, key)]
    if any(b <= a for a, b in itertools.pairwise(codes)):
        raise bad(key, "codes not strictly increasing")
    return codes


def _tree(d: Any, t: int, n_cat: int, n_features: int, n_codes: list[int]) -> TreeArrays:
    key, c = f"trees[{t}]", _CHECKS
    cols = frame.tree_columns(d, key, TREE_KEYS, MAX_NODES, c)
    n = len(cols["feature"])
    feature = [c.integer(f, f"{key}.feature", -1, n_features - 1) for f in cols["feature"]]
    value = [c.number(v, f"{key}.value") for v in cols["value"]]
    count = [c.integer(v, f"{key}.count", 1, 2**32 - 1) for v in cols["count"]]
    missing_left = [c.boolean(v, f"{key}.missing_left") for v in cols["missing_left"]]
    categorical = [c.boolean(v, f"{key}.categorical") for v in cols["categorical"]]
    threshold = [c.number(v, f"{key}.threshold", allow_inf=True) for v in cols["threshold"]]
    left = [c.integer(v, f"{key}.left", 0, n - 1) for v in cols["left"]]
    right = [c.integer(v, f"{key}.right", 0, n - 1) for v in cols["right"]]
    frame.check_shape(feature, left, right, key, c)
    cat_left: list[list[int]] = []
    for i, f in enumerate(feature):
        if f < 0:
            if left[i] or right[i] or categorical[i] or cols["cat_left"][i]:
                raise bad(f"{key}.left", "a leaf with children or categories")
            cat_left.append([])
            continue
        if count[i] != count[left[i]] + count[right[i]]:
            raise bad(f"{key}.count", "a node's count is not its children's sum")
        if categorical[i] != (f < n_cat):
            raise bad(f"{key}.categorical", "categorical splits belong to categorical features")
        if categorical[i]:
            cat_left.append(_codes(cols["cat_left"][i], f"{key}.cat_left", n_codes[f]))
        elif cols["cat_left"][i] != []:
            raise bad(f"{key}.cat_left", "categories on a numeric split")
        else:
            cat_left.append([])
    return TreeArrays(
        feature, threshold, left, right, missing_left, categorical, cat_left, value, count
    )


def parse(d: Mapping[str, Any], spec: FeatureSpec) -> ParsedTrees:
    """Validate a compiled tree model's dict against ``spec`` and return its numbers.

    Raises:
        ModelLoadError: ``d`` is malformed, inconsistent, has non-finite numbers or was made
            for another feature spec.
    """
    frame.check_header(d, spec, _CHECKS, fmt=FORMAT, kind=KIND, keys=TOP_KEYS, what="a tree model")
    n_cat = len(spec.categorical)
    n_features = n_cat + len(spec.numeric) + len(spec.binary)
    categories = frame.check_categories(d, n_cat, MAX_CATEGORIES, _CHECKS)
    n_codes = [len(c) for c in categories] + [0] * (n_features - n_cat)
    known_lists = _CHECKS.array(d["known"], "known", n_cat)
    known = [_codes(k, f"known[{f}]", max(n_codes[f], 1)) for f, k in enumerate(known_lists)]
    baseline = _CHECKS.number(d["baseline"], "baseline")
    raw_trees = frame.check_trees(d, MAX_TREES, _CHECKS)
    trees = [_tree(t, i, n_cat, n_features, n_codes) for i, t in enumerate(raw_trees)]
    return ParsedTrees(categories, known, baseline, trees)
