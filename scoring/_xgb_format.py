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

import math
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from junction.core.errors import ModelLoadError
from scoring.spec import FeatureSpec

FORMAT = "junction.compiled-xgb-model.v1"
KIND = "xgb_trees"
MAX_TREES = 10_000
MAX_NODES = 100_000
MAX_CATEGORIES = 100_000
TREE_KEYS = ("feature", "threshold", "left", "right", "default_left", "value", "cover")
TOP_KEYS = frozenset(
    {
        "format",
        "kind",
        "spec",
        "feature_schema_hash",
        "features",
        "categories",
        "base_margin",
        "trees",
    }
)
_F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """``x`` rounded to float32 (to infinity beyond float32's range), as a Python float."""
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


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


def bad(key: str, problem: str) -> ModelLoadError:
    """The error for a malformed key of a compiled XGBoost model."""
    return ModelLoadError(
        "the compiled XGBoost model is malformed", context={"key": key, "problem": problem}
    )


def _number(value: Any, key: str, *, float32: bool = False) -> float:
    # bool is an int subclass; true/false where a number belongs is a broken file
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, "not a number")
    x = float(value)
    if not math.isfinite(x):
        raise bad(key, "not finite")
    if float32 and f32(x) != x:
        raise bad(key, "not a float32 number")
    return x


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad(key, f"not an integer in [{lo}, {hi}]")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise bad(key, "not true or false")
    return value


def _list(value: Any, key: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise bad(key, "not a list")
    if length is not None and len(value) != length:
        raise bad(key, f"expected {length} entries, found {len(value)}")
    return value


def _tree(d: Any, t: int, n_features: int) -> XgbTree:
    key = f"trees[{t}]"
    if not isinstance(d, Mapping) or set(d) != set(TREE_KEYS):
        raise bad(key, "not an object with the tree keys")
    feats = _list(d["feature"], f"{key}.feature")
    n = len(feats)
    if not 1 <= n <= MAX_NODES:
        raise bad(f"{key}.feature", "wrong number of nodes")
    cols = {k: _list(d[k], f"{key}.{k}", n) for k in TREE_KEYS}
    feature = [_int(f, f"{key}.feature", -1, n_features - 1) for f in feats]
    value = [_number(v, f"{key}.value", float32=True) for v in cols["value"]]
    cover = [_number(v, f"{key}.cover") for v in cols["cover"]]
    if any(c <= 0.0 for c in cover):
        raise bad(f"{key}.cover", "not positive")
    threshold = [_number(v, f"{key}.threshold", float32=True) for v in cols["threshold"]]
    default_left = [_bool(v, f"{key}.default_left") for v in cols["default_left"]]
    left = [_int(v, f"{key}.left", 0, n - 1) for v in cols["left"]]
    right = [_int(v, f"{key}.right", 0, n - 1) for v in cols["right"]]
    parents = [0] * n
    for i, f in enumerate(feature):
        if f < 0:
            if left[i] or right[i] or default_left[i] or threshold[i]:
                raise bad(f"{key}.left", "a leaf with children or a split")
            continue
        if value[i]:
            raise bad(f"{key}.value", "a split with a value")
        if not i < left[i] != right[i] > i:
            raise bad(f"{key}.left", "children must follow their parent")
        parents[left[i]] += 1
        parents[right[i]] += 1
    # every node but the root has exactly one parent, and parents precede children: one tree
    if parents[0] != 0 or any(p != 1 for p in parents[1:]):
        raise bad(f"{key}.left", "the nodes do not form one tree")
    return XgbTree(feature, threshold, left, right, default_left, value, cover)


def _categories(d: Mapping[str, Any], n_cat: int) -> list[list[str]]:
    cats = _list(d.get("categories"), "categories", n_cat)
    out: list[list[str]] = []
    for f, values in enumerate(cats):
        key = f"categories[{f}]"
        values = _list(values, key)
        if len(values) > MAX_CATEGORIES or not all(isinstance(v, str) for v in values):
            raise bad(key, f"not a list of at most {MAX_CATEGORIES} strings")
        if len(set(values)) != len(values):
            raise bad(key, "duplicate categories")
        out.append(list(values))
    return out


def parse(d: Any, spec: FeatureSpec) -> ParsedXgb:
    """Validate a compiled XGBoost model's dict against ``spec`` and return its numbers.

    Raises:
        ModelLoadError: ``d`` is malformed, inconsistent, has non-finite or non-float32
            numbers, or was made for another feature spec.
    """
    if not isinstance(d, Mapping):
        raise bad("format", "not an object")
    if set(d) != TOP_KEYS:
        raise bad(sorted(set(d) ^ TOP_KEYS)[0], "unexpected or missing key")
    if d["format"] != FORMAT:
        raise bad("format", "unknown format")
    if d["kind"] != KIND:
        raise bad("kind", "not an XGBoost model")
    if d["feature_schema_hash"] != spec.schema_hash or d["spec"] != spec.to_dict():
        raise ModelLoadError(
            "the model was trained on other features than this version computes",
            context={"key": "feature_schema_hash"},
        )
    features = {
        "categorical": list(spec.categorical),
        "numeric": list(spec.numeric),
        "binary": list(spec.binary),
    }
    if d["features"] != features:
        raise bad("features", "not the features of the spec")
    n_features = len(spec.categorical) + len(spec.numeric) + len(spec.binary)
    categories = _categories(d, len(spec.categorical))
    base_margin = _number(d["base_margin"], "base_margin", float32=True)
    raw_trees = _list(d["trees"], "trees")
    if not 1 <= len(raw_trees) <= MAX_TREES:
        raise bad("trees", "wrong number of trees")
    trees = [_tree(t, i, n_features) for i, t in enumerate(raw_trees)]
    return ParsedXgb(categories, base_margin, trees)
