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
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from junction.core.errors import ModelLoadError
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
TOP_KEYS = frozenset(
    {
        "format",
        "kind",
        "spec",
        "feature_schema_hash",
        "features",
        "categories",
        "known",
        "baseline",
        "trees",
    }
)


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


def bad(key: str, problem: str) -> ModelLoadError:
    """The error for a malformed key of a compiled tree model."""
    return ModelLoadError(
        "the compiled tree model is malformed", context={"key": key, "problem": problem}
    )


def _number(value: Any, key: str, *, allow_inf: bool = False) -> float:
    if allow_inf and value == "inf":
        return math.inf
    # bool is an int subclass; true/false where a number belongs is a broken file
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, "not a number")
    x = float(value)
    if not math.isfinite(x):
        raise bad(key, "not finite")
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


def _codes(value: Any, key: str, n_codes: int) -> list[int]:
    codes = [_int(c, key, 0, n_codes - 1) for c in _list(value, key)]
    if any(b <= a for a, b in itertools.pairwise(codes)):
        raise bad(key, "codes not strictly increasing")
    return codes


def _tree(d: Any, t: int, n_cat: int, n_features: int, n_codes: list[int]) -> TreeArrays:
    key = f"trees[{t}]"
    if not isinstance(d, Mapping) or set(d) != set(TREE_KEYS):
        raise bad(key, "not an object with the tree keys")
    feats = _list(d["feature"], f"{key}.feature")
    n = len(feats)
    if not 1 <= n <= MAX_NODES:
        raise bad(f"{key}.feature", "wrong number of nodes")
    cols = {k: _list(d[k], f"{key}.{k}", n) for k in TREE_KEYS}
    feature = [_int(f, f"{key}.feature", -1, n_features - 1) for f in feats]
    value = [_number(v, f"{key}.value") for v in cols["value"]]
    count = [_int(c, f"{key}.count", 1, 2**32 - 1) for c in cols["count"]]
    missing_left = [_bool(v, f"{key}.missing_left") for v in cols["missing_left"]]
    categorical = [_bool(v, f"{key}.categorical") for v in cols["categorical"]]
    threshold = [_number(v, f"{key}.threshold", allow_inf=True) for v in cols["threshold"]]
    left = [_int(v, f"{key}.left", 0, n - 1) for v in cols["left"]]
    right = [_int(v, f"{key}.right", 0, n - 1) for v in cols["right"]]
    cat_left: list[list[int]] = []
    parents = [0] * n
    for i, f in enumerate(feature):
        if f < 0:
            if left[i] or right[i] or categorical[i] or cols["cat_left"][i]:
                raise bad(f"{key}.left", "a leaf with children or categories")
            cat_left.append([])
            continue
        if not i < left[i] != right[i] > i:
            raise bad(f"{key}.left", "children must follow their parent")
        parents[left[i]] += 1
        parents[right[i]] += 1
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
    # every node but the root has exactly one parent, and parents precede children: one tree
    if parents[0] != 0 or any(p != 1 for p in parents[1:]):
        raise bad(f"{key}.left", "the nodes do not form one tree")
    return TreeArrays(
        feature, threshold, left, right, missing_left, categorical, cat_left, value, count
    )


def _categories(d: Mapping[str, Any], names: Sequence[str]) -> list[list[str]]:
    cats = _list(d.get("categories"), "categories", len(names))
    out: list[list[str]] = []
    for f, values in enumerate(cats):
        key = f"categories[{f}]"
        values = _list(values, key)
        if len(values) > MAX_CATEGORIES or not all(isinstance(v, str) for v in values):
            raise bad(key, "not a list of at most 255 strings")
        if len(set(values)) != len(values):
            raise bad(key, "duplicate categories")
        out.append(list(values))
    return out


def parse(d: Mapping[str, Any], spec: FeatureSpec) -> ParsedTrees:
    """Validate a compiled tree model's dict against ``spec`` and return its numbers.

    Raises:
        ModelLoadError: ``d`` is malformed, inconsistent, has non-finite numbers or was made
            for another feature spec.
    """
    if not isinstance(d, Mapping):
        raise bad("format", "not an object")
    if set(d) != TOP_KEYS:
        raise bad(sorted(set(d) ^ TOP_KEYS)[0], "unexpected or missing key")
    if d["format"] != FORMAT:
        raise bad("format", "unknown format")
    if d["kind"] != KIND:
        raise bad("kind", "not a tree model")
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
    n_cat = len(spec.categorical)
    n_features = n_cat + len(spec.numeric) + len(spec.binary)
    categories = _categories(d, spec.categorical)
    n_codes = [len(c) for c in categories] + [0] * (n_features - n_cat)
    known_lists = _list(d["known"], "known", n_cat)
    known = [_codes(k, f"known[{f}]", max(n_codes[f], 1)) for f, k in enumerate(known_lists)]
    baseline = _number(d["baseline"], "baseline")
    raw_trees = _list(d["trees"], "trees")
    if not 1 <= len(raw_trees) <= MAX_TREES:
        raise bad("trees", "wrong number of trees")
    trees = [_tree(t, i, n_cat, n_features, n_codes) for i, t in enumerate(raw_trees)]
    return ParsedTrees(categories, known, baseline, trees)
