"""Validation of the plain-JSON form of a compiled lead model (``compiled.json``).

:func:`parse` checks every key, type, length and cross-reference of a dict written by
:meth:`scoring.compiled.CompiledLeadModel.to_dict` and returns the numbers it holds.  The dict
comes from disk, so it is treated as untrusted: anything off raises
:class:`~junction.core.errors.ModelLoadError` naming the offending key, never a ``KeyError`` or
``TypeError`` from deep inside the scorer, and never a model that would score wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from junction.core.errors import ModelLoadError
from scoring._json_checks import Checks
from scoring.spec import FeatureSpec

FORMAT = "junction.compiled-lead-model.v1"


class ParsedModel(NamedTuple):
    """The numbers of a valid compiled model, in the order ``CompiledLeadModel`` uses them."""

    intercept: float
    categories: list[list[str]]  # per categorical feature, in term order
    cat_coef: list[float]  # one per category term, same order
    mean: list[float]
    k: list[float]
    bin_coef: list[float]


_CHECKS = Checks("the compiled model is malformed")
_bad, _number = _CHECKS.bad, _CHECKS.number


def _numbers(d: Mapping[str, Any], key: str, length: int) -> list[float]:
    value = d.get(key)
    if not isinstance(value, list):
        raise _bad(key, "not a list")
    if len(value) != length:
        raise _bad(key, f"expected {length} values, found {len(value)}")
    return [_number(v, key) for v in value]


def _categories(d: Mapping[str, Any], n_cat: int) -> list[list[str]]:
    """Return the categories per feature; their term ids must count up from 0 in order."""
    cat_terms = d.get("cat_terms")
    if not isinstance(cat_terms, list) or len(cat_terms) != n_cat:
        raise _bad("cat_terms", f"expected a list of {n_cat} objects")
    categories: list[list[str]] = []
    next_id = 0
    for terms in cat_terms:
        if not isinstance(terms, dict) or not terms:
            raise _bad("cat_terms", "expected a non-empty object per feature")
        for category, term in terms.items():
            if not isinstance(category, str):
                raise _bad("cat_terms", "a category is not text")
            if not isinstance(term, int) or isinstance(term, bool) or term != next_id:
                raise _bad("cat_terms", "term ids are not consecutive")
            next_id += 1
        categories.append(list(terms))
    return categories


def parse(d: Mapping[str, Any], spec: FeatureSpec) -> ParsedModel:
    """Validate ``d`` (a ``CompiledLinearModel.to_dict()``) and return its numbers.

    Args:
        d: the dict, usually just read from ``compiled.json``.
        spec: the feature spec ``d`` must have been made for (its hash and names must match).

    Raises:
        ModelLoadError: anything is missing, of the wrong type or length, non-finite,
            inconsistent (term names, ids, the zero "other" terms) or for another feature spec.
    """
    if not isinstance(d, Mapping):
        raise _bad("", "not an object")
    if d.get("format") != FORMAT:
        raise _bad("format", f"expected {FORMAT}")
    if d.get("feature_schema_hash") != spec.schema_hash:
        raise ModelLoadError(
            "the compiled model was made for other features than this version computes",
            context={"expected": spec.schema_hash, "found": str(d.get("feature_schema_hash"))},
        )
    cat_names, num_names, bin_names = spec.categorical, spec.numeric, spec.binary
    features = {
        "categorical": list(cat_names),
        "numeric": list(num_names),
        "binary": list(bin_names),
    }
    if d.get("features") != features:
        raise _bad("features", "the feature names or their order differ")
    n_cat = len(cat_names)
    categories = _categories(d, n_cat)
    n_cat_terms = sum(len(c) for c in categories)
    coef = _numbers(d, "term_coef", n_cat_terms + n_cat)
    if any(coef[n_cat_terms:]):
        raise _bad("term_coef", "the 'other' terms must contribute 0")
    names = [f"{f}={c}" for f, cats in zip(cat_names, categories, strict=True) for c in cats]
    names += [f"{f}=other" for f in cat_names] + list(num_names) + list(bin_names)
    if d.get("term_names") != names:
        raise _bad("term_names", "the names do not match the terms")
    return ParsedModel(
        intercept=_number(d.get("intercept"), "intercept"),
        categories=categories,
        cat_coef=coef[:n_cat_terms],
        mean=_numbers(d, "mean", len(num_names)),
        k=_numbers(d, "k", len(num_names)),
        bin_coef=_numbers(d, "bin_coef", len(bin_names)),
    )
