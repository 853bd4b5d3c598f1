"""Validation of the plain-JSON form of a compiled XGBoost model (kind ``xgb_trees``).

:func:`parse` checks every key, type, length and cross-reference of a dict written by
:meth:`scoring.xgb.CompiledXgbModel.to_dict`.  The dict comes from disk, so it is treated as
untrusted: anything off raises :class:`~junction.core.errors.ModelLoadError` naming the
offending key, never an ``IndexError`` deep inside a tree walk or an endless loop.

Each tree is a set of node arrays in pre-order (the root is node 0, every child has a higher
index than its parent, so the nodes form one tree), leaves marked by feature ``-1``.  Every
threshold, leaf value and the base margin are float32 numbers (XGBoost's own precision), and
a number that float32 cannot hold exactly is refused: the compiled model compares and adds
in float32 like XGBoost, so a rounded number would route or score differently.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from scoring import _ensemble_format as frame
from scoring._json_checks import Checks
from scoring.spec import FeatureSpec

FORMAT = "junction.compiled-xgb-model.v1"
KIND = "xgb_trees"
MAX_TREES = 10_000
MAX_NODES = 100_000
MAX_CATEGORIES = 100_000
TREE_KEYS = ("feature", "threshold", "left", "right", "default_left", "value", "cover")
TOP_KEYS = frame.HEADER_KEYS | {"base_margin", "trees"}


class XgbTree(NamedTuple):
    """The nodes of one tree; entries of leaves other than value and cover are unused."""

    feature: list[int]  # -1 for a leaf
    threshold: list[float]  # go left iff float32(x) < threshold
    left: list[int]
    right: list[int]
    default_left: list[bool]  # NaN, an unknown or a missing category goes left
    value: list[float]  # leaves: the tree's output (learning rate applied), float32
    cover: list[float]  # sum of the training hessians that reached the node


class ParsedXgb(NamedTuple):
    """The numbers of a valid compiled XGBoost model."""

    categories: list[list[str]]  # per categorical feature: ordinal code -> category
    base_margin: float
    trees: list[XgbTree]


_CHECKS = Checks("the compiled XGBoost model is malformed")
bad = _CHECKS.bad


def _tree(d: Any, t: int, n_features: int) -> XgbTree:
    key, c = f"trees[{t}]", _CHECKS
    cols = frame.tree_columns(d, key, TREE_KEYS, MAX_NODES, c)
    n = len(cols["feature"])
    feature = [c.integer(f, f"{key}.feature", -1, n_features - 1) for f in cols["feature"]]
    value = [c.number(v, f"{key}.value", float32=True) for v in cols["value"]]
    cover = [c.number(v, f"{key}.cover") for v in cols["cover"]]
    if any(v <= 0.0 for v in cover):
        raise bad(f"{key}.cover", "not positive")
    threshold = [c.number(v, f"{key}.threshold", float32=True) for v in cols["threshold"]]
    default_left = [c.boolean(v, f"{key}.default_left") for v in cols["default_left"]]
    left = [c.integer(v, f"{key}.left", 0, n - 1) for v in cols["left"]]
    right = [c.integer(v, f"{key}.right", 0, n - 1) for v in cols["right"]]
    frame.check_shape(feature, left, right, key, c)
    for i, f in enumerate(feature):
        if f < 0 and (left[i] or right[i] or default_left[i] or threshold[i]):
            raise bad(f"{key}.left", "a leaf with children or a split")
        if f >= 0 and value[i]:
            raise bad(f"{key}.value", "a split with a value")
    return XgbTree(feature, threshold, left, right, default_left, value, cover)


def parse(d: Any, spec: FeatureSpec) -> ParsedXgb:
    """Validate a compiled XGBoost model's dict against ``spec`` and return its numbers.

    Raises:
        ModelLoadError: ``d`` is malformed, inconsistent, has non-finite or non-float32
            numbers, or was made for another feature spec.
    """
    frame.check_header(
        d, spec, _CHECKS, fmt=FORMAT, kind=KIND, keys=TOP_KEYS, what="an XGBoost model"
    )
    n_features = len(spec.categorical) + len(spec.numeric) + len(spec.binary)
    categories = frame.check_categories(d, len(spec.categorical), MAX_CATEGORIES, _CHECKS)
    base_margin = _CHECKS.number(d["base_margin"], "base_margin", float32=True)
    raw_trees = frame.check_trees(d, MAX_TREES, _CHECKS)
    trees = [_tree(t, i, n_features) for i, t in enumerate(raw_trees)]
    return ParsedXgb(categories, base_margin, trees)
