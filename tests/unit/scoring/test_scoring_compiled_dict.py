"""CompiledLeadModel as plain JSON: exact round trip, and every malformed dict refused."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from junction.core.errors import ModelLoadError
from scoring.compiled import CompiledLeadModel
from scoring.features import extract
from scoring.registry import load_model


@pytest.fixture(scope="module")
def compiled(default_version_dir) -> CompiledLeadModel:
    return CompiledLeadModel(load_model(default_version_dir).pipeline)


def _same_numbers(a: CompiledLeadModel, b: CompiledLeadModel) -> None:
    assert a.intercept == b.intercept
    assert a.term_names == b.term_names
    assert a.cat_terms == b.cat_terms
    assert a.cat_pairs == b.cat_pairs
    for name in ("term_coef", "mean", "k", "bin_coef", "other_terms", "num_terms", "bin_terms"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)  # exact: no tolerance


def test_json_round_trip_is_exact(compiled, holdout_leads):
    text = json.dumps(compiled.to_dict(), allow_nan=False)
    again = CompiledLeadModel.from_dict(json.loads(text))
    _same_numbers(again, compiled)
    assert again.to_dict() == compiled.to_dict()
    for lead in holdout_leads[:200]:
        row = extract(lead)
        assert again.explain_row(row) == compiled.explain_row(row)


def test_to_dict_holds_what_scoring_needs(compiled):
    d = compiled.to_dict()
    n_cat_terms = sum(len(t) for t in d["cat_terms"])
    assert len(d["term_names"]) == n_cat_terms + 4 + 5 + 4
    assert len(d["term_coef"]) == n_cat_terms + 4
    assert d["term_coef"][n_cat_terms:] == [0.0] * 4
    assert d["cat_terms"][0]["referral"] == d["term_names"].index("lead_source=referral")
    assert (len(d["mean"]), len(d["k"]), len(d["bin_coef"])) == (5, 5, 4)
    assert isinstance(d["intercept"], float)
    assert d["feature_schema_hash"] == compiled.feature_schema_hash


def test_a_model_from_a_dict_is_independent_of_the_dict(compiled):
    d = compiled.to_dict()
    model = CompiledLeadModel.from_dict(d)
    d["k"][0] = 123.0
    d["cat_terms"][0]["new"] = 99
    assert model.k[0] == compiled.k[0]
    assert "new" not in model.cat_terms[0]
    model.k[2] = 1e10  # writable, as a private scorer may tune it
    assert compiled.k[2] != 1e10


def _set(path: tuple, value):
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(key):
    return lambda d: d.pop(key)


def _rename_category(d):
    terms = d["cat_terms"][1]
    first = next(iter(terms))
    d["cat_terms"][1] = {"renamed" if c == first else c: t for c, t in terms.items()}


def _swap_ids(d):
    terms = d["cat_terms"][0]
    (a, ta), (b, tb), *rest = terms.items()
    d["cat_terms"][0] = {a: tb, b: ta, **dict(rest)}


def _float_id(d):
    terms = d["cat_terms"][0]
    terms["referral"] = float(terms["referral"])  # the right id, of the wrong type


# case: (edit, the key the refusal names)
MALFORMED = {
    "no format": (_delete("format"), "format"),
    "other format": (_set(("format",), "junction.compiled-lead-model.v0"), "format"),
    "features reordered": (_set(("features", "numeric"), ["visits", "page_views"]), "features"),
    "cat_terms missing": (_delete("cat_terms"), "cat_terms"),
    "cat_terms too short": (lambda d: d["cat_terms"].pop(), "cat_terms"),
    "empty category map": (_set(("cat_terms", 2), {}), "cat_terms"),
    "category map is a list": (_set(("cat_terms", 2), ["US"]), "cat_terms"),
    "term ids swapped": (_swap_ids, "cat_terms"),
    "term id as float": (_float_id, "cat_terms"),
    "term id as bool": (_set(("cat_terms", 0, "cold_call"), False), "cat_terms"),
    "renamed category": (_rename_category, "term_names"),
    "term_names missing": (_delete("term_names"), "term_names"),
    "term name changed": (_set(("term_names", 0), "lead_source=web"), "term_names"),
    "term_coef too short": (lambda d: d["term_coef"].pop(0), "term_coef"),
    "term_coef text": (_set(("term_coef", 0), "0.5"), "term_coef"),
    "term_coef nan": (_set(("term_coef", 0), math.nan), "term_coef"),
    "term_coef inf": (_set(("term_coef", 1), math.inf), "term_coef"),
    "term_coef bool": (_set(("term_coef", 1), True), "term_coef"),
    "other term not zero": (_set(("term_coef", -1), 0.1), "term_coef"),
    "intercept missing": (_delete("intercept"), "intercept"),
    "intercept text": (_set(("intercept",), "1.0"), "intercept"),
    "intercept nan": (_set(("intercept",), math.nan), "intercept"),
    "mean too long": (lambda d: d["mean"].append(0.0), "mean"),
    "k not a list": (_set(("k",), 1.0), "k"),
    "k none": (_set(("k", 3), None), "k"),
    "bin_coef too short": (lambda d: d["bin_coef"].pop(), "bin_coef"),
}


@pytest.mark.parametrize(("edit", "key"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_dict_is_refused(compiled, edit, key):
    d = copy.deepcopy(compiled.to_dict())
    edit(d)
    with pytest.raises(ModelLoadError, match="malformed") as info:
        CompiledLeadModel.from_dict(d)
    assert info.value.context["key"] == key


@pytest.mark.parametrize("value", [None, "", "0" * 64])
def test_dict_for_another_feature_spec_is_refused(compiled, value):
    d = compiled.to_dict() | {"feature_schema_hash": value}
    with pytest.raises(ModelLoadError, match="other features"):
        CompiledLeadModel.from_dict(d)


@pytest.mark.parametrize("value", [[], "compiled", None, 3])
def test_a_non_object_is_refused(value):
    with pytest.raises(ModelLoadError, match="malformed"):
        CompiledLeadModel.from_dict(value)  # type: ignore[arg-type]


def test_integer_numbers_are_accepted_as_floats(compiled):
    # a hand-written or re-serialized file may write 0.0 as 0
    d = compiled.to_dict() | {"intercept": 0, "bin_coef": [0, 1, 0, 0]}
    model = CompiledLeadModel.from_dict(d)
    assert model.intercept == 0.0
    assert isinstance(model.intercept, float)
    assert model.bin_coef.dtype == np.float64
    assert model.bin_coef.tolist() == [0.0, 1.0, 0.0, 0.0]
