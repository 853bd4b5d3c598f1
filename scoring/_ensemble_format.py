"""Validation shared by the plain-JSON forms of the compiled tree ensembles.

:mod:`scoring._tree_format` (kind ``trees``) and :mod:`scoring._xgb_format` (kind
``xgb_trees``) have the same frame: a header naming the format, the kind and the feature spec,
the categories of each categorical feature, and trees of node arrays in which the root is node
0 and every child has a higher index than its parent (so the nodes form one tree, and a walk
ends), leaves marked by feature ``-1``.  The dict comes from disk, so it is untrusted: anything
off raises :class:`~junction.core.errors.ModelLoadError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from junction.core.errors import ModelLoadError
from scoring._json_checks import Checks
from scoring.spec import FeatureSpec

# the keys :func:`header` writes, which both formats start with
HEADER_KEYS = frozenset({"format", "kind", "spec", "feature_schema_hash", "features", "categories"})


def features(spec: FeatureSpec) -> dict[str, list[str]]:
    """The ``features`` entry of a model dict: the spec's column names by kind."""
    return {
        "categorical": list(spec.categorical),
        "numeric": list(spec.numeric),
        "binary": list(spec.binary),
    }


def header(
    fmt: str, kind: str, spec: FeatureSpec, categories: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """The first keys of a model dict, in the order ``to_dict`` writes them."""
    return {
        "format": fmt,
        "kind": kind,
        "spec": spec.to_dict(),
        "feature_schema_hash": spec.schema_hash,
        "features": features(spec),
        "categories": [list(c) for c in categories],
    }


def check_header(
    d: Any,
    spec: FeatureSpec,
    checks: Checks,
    *,
    fmt: str,
    kind: str,
    keys: frozenset[str],
    what: str,
) -> None:
    """Check the keys, format, kind and feature spec of a model dict.

    Raises:
        ModelLoadError: a key is missing or unexpected, the format or kind is another
            (``what`` names the kind expected), or the model was made for another spec.
    """
    if not isinstance(d, Mapping):
        raise checks.bad("format", "not an object")
    if set(d) != keys:
        raise checks.bad(sorted(set(d) ^ keys)[0], "unexpected or missing key")
    if d["format"] != fmt:
        raise checks.bad("format", "unknown format")
    if d["kind"] != kind:
        raise checks.bad("kind", f"not {what}")
    if d["feature_schema_hash"] != spec.schema_hash or d["spec"] != spec.to_dict():
        raise ModelLoadError(
            "the model was trained on other features than this version computes",
            context={"key": "feature_schema_hash"},
        )
    if d["features"] != features(spec):
        raise checks.bad("features", "not the features of the spec")


def check_categories(
    d: Mapping[str, Any], n_cat: int, most: int, checks: Checks
) -> list[list[str]]:
    """The ``categories`` of a model dict: per categorical feature, distinct strings."""
    cats = checks.array(d.get("categories"), "categories", n_cat)
    out: list[list[str]] = []
    for f, values in enumerate(cats):
        key = f"categories[{f}]"
        values = checks.array(values, key)
        if len(values) > most or not all(isinstance(v, str) for v in values):
            raise checks.bad(key, f"not a list of at most {most} strings")
        if len(set(values)) != len(values):
            raise checks.bad(key, "duplicate categories")
        out.append(list(values))
    return out


def check_trees(d: Mapping[str, Any], most: int, checks: Checks) -> list[Any]:
    """The ``trees`` list of a model dict (its entries are left to the format)."""
    raw_trees = checks.array(d["trees"], "trees")
    if not 1 <= len(raw_trees) <= most:
        raise checks.bad("trees", "wrong number of trees")
    return raw_trees


def tree_columns(
    d: Any, key: str, keys: Sequence[str], most_nodes: int, checks: Checks
) -> dict[str, list[Any]]:
    """The node arrays of one tree: exactly ``keys``, lists of one length (the node count)."""
    if not isinstance(d, Mapping) or set(d) != set(keys):
        raise checks.bad(key, "not an object with the tree keys")
    n = len(checks.array(d["feature"], f"{key}.feature"))
    if not 1 <= n <= most_nodes:
        raise checks.bad(f"{key}.feature", "wrong number of nodes")
    return {k: checks.array(d[k], f"{key}.{k}", n) for k in keys}


def check_shape(
    feature: list[int], left: list[int], right: list[int], key: str, checks: Checks
) -> None:
    """Check the split nodes' children (in range already) make one tree, parents first."""
    n = len(feature)
    parents = [0] * n
    for i, f in enumerate(feature):
        if f < 0:
            continue
        if not i < left[i] != right[i] > i:
            raise checks.bad(f"{key}.left", "children must follow their parent")
        parents[left[i]] += 1
        parents[right[i]] += 1
    # every node but the root has exactly one parent, and parents precede children: one tree
    if parents[0] != 0 or any(p != 1 for p in parents[1:]):
        raise checks.bad(f"{key}.left", "the nodes do not form one tree")
