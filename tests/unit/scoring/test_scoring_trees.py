"""CompiledTreeModel: the same probabilities as the calibrated scikit-learn trees, exact sums,
a bit-exact JSON round trip, and every tampered dict refused."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest

from junction.core.errors import ModelLoadError
from scoring.calibration import Calibration
from scoring.lead_spec import LEAD_SPEC
from scoring.pipelines import build_linear, build_trees, calibrate
from scoring.spec import columns_from_rows, to_matrix
from scoring.trees import CompiledTreeModel
from tests.tree_support import COLOURS, TOY_SPEC, lead_data, toy_labels, toy_rows


@pytest.fixture(scope="module")
def toy() -> dict[str, Any]:
    """Trees on TOY_SPEC (NaNs in training), early stopping on, isotonic calibration."""
    rows = toy_rows(3000, seed=1)
    y = toy_labels(rows, seed=1)
    x = to_matrix(TOY_SPEC, rows)
    pipe = build_trees(TOY_SPEC, 3, max_iter=60).fit(x[:2200], y[:2200])
    cal = calibrate(pipe, x[2200:], y[2200:], "isotonic")
    return {"pipe": pipe, "cal": cal, "model": CompiledTreeModel.from_calibrated(cal, TOY_SPEC)}


@pytest.fixture(scope="module")
def leads() -> dict[str, Any]:
    """Trees on synthetic leads with sigmoid calibration."""
    _rows, x, y = lead_data(4000, seed=11)
    pipe = build_trees(LEAD_SPEC, 5, max_iter=40).fit(x[:3000], y[:3000])
    cal = calibrate(pipe, x[3000:], y[3000:], "sigmoid")
    test_rows, _, _ = lead_data(600, seed=12)
    return {
        "pipe": pipe,
        "cal": cal,
        "model": CompiledTreeModel.from_calibrated(cal, LEAD_SPEC),
        "rows": test_rows,
    }


def _unseen_lead_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Lead rows with categories no model has seen, in every categorical position."""
    out = []
    for i, row in enumerate(rows[:50]):
        r = list(row)
        r[i % 4] = f"never-seen-{i}"
        out.append(tuple(r))
    return out


def _test_toy_rows() -> list[tuple[Any, ...]]:
    # colours c12.. are unseen; extreme and NaN numerics exercise every routing branch
    rows = toy_rows(800, seed=99, colours=[*COLOURS, "c12", "c13", "purple"])
    rows += [
        ("c1", "s", math.inf, -math.inf, 1.0),
        ("c2", "zz", -1e308, 1e308, 0.0),
        ("nope", "m", math.nan, math.nan, 1.0),
    ]
    return rows


def test_trees_keep_the_columns_in_row_order():
    pipe = build_trees(LEAD_SPEC, 0)
    assert [s[0] for s in pipe.steps] == ["pre", "clf"]
    assert pipe.named_steps["clf"].get_params()["categorical_features"] == [0, 1, 2, 3]


@pytest.mark.parametrize("which", ["toy", "leads"])
def test_probability_equals_calibrated_sklearn(which, request):
    data = request.getfixturevalue(which)
    spec = TOY_SPEC if which == "toy" else LEAD_SPEC
    rows = _test_toy_rows() if which == "toy" else data["rows"] + _unseen_lead_rows(data["rows"])
    x = to_matrix(spec, rows)
    want = data["cal"].predict_proba(x)[:, 1]
    margin = data["pipe"].decision_function(x)
    model: CompiledTreeModel = data["model"]
    # one row, pure Python: the margin is the same double, the probability within 1e-9
    z_rows = np.array([model.explain_row(r)[0] for r in rows])
    np.testing.assert_array_equal(z_rows, margin)
    got_one = np.array([model.calibration.apply_one(z) for z in z_rows])
    np.testing.assert_allclose(got_one, want, rtol=0, atol=1e-9)
    # the batch path
    z, contrib, terms = model.explain_columns(columns_from_rows(spec, rows))
    np.testing.assert_array_equal(z, margin)
    np.testing.assert_allclose(
        model.predict_columns(columns_from_rows(spec, rows)), want, atol=1e-9
    )
    assert contrib.shape == terms.shape == (len(rows), len(rows[0]))
    assert model.predict_one(rows[0]) == pytest.approx(want[0], abs=1e-9)


def test_uncalibrated_probability_is_predict_proba(leads):
    model = CompiledTreeModel(leads["pipe"], LEAD_SPEC)
    rows = leads["rows"][:200]
    want = leads["pipe"].predict_proba(to_matrix(LEAD_SPEC, rows))[:, 1]
    assert model.calibration.method == "none"
    got = [model.predict_one(r) for r in rows]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["toy", "leads"])
def test_contributions_sum_to_the_margin(which, request):
    data = request.getfixturevalue(which)
    spec = TOY_SPEC if which == "toy" else LEAD_SPEC
    rows = _test_toy_rows() if which == "toy" else data["rows"]
    model: CompiledTreeModel = data["model"]
    for row in rows[:300]:
        z, terms = model.explain_row(row)
        assert len(terms) == len(row)
        assert model.bias + math.fsum(c for _, c in terms) == pytest.approx(z, abs=1e-9)
    margins, contrib, _ = model.explain_columns(columns_from_rows(spec, rows))
    np.testing.assert_allclose(model.bias + contrib.sum(axis=1), margins, atol=1e-9)


def test_row_and_batch_agree_on_terms(leads):
    model: CompiledTreeModel = leads["model"]
    rows = leads["rows"][:100] + _unseen_lead_rows(leads["rows"])
    _, contrib, terms = model.explain_columns(columns_from_rows(LEAD_SPEC, rows))
    for i, row in enumerate(rows):
        _, pairs = model.explain_row(row)
        assert [name for name, _ in pairs] == [model.term_names[t] for t in terms[i]]
        np.testing.assert_allclose([c for _, c in pairs], contrib[i], atol=1e-12)


def test_term_names_read_like_the_linear_model(leads):
    model: CompiledTreeModel = leads["model"]
    row = leads["rows"][0]
    _, pairs = model.explain_row(row)
    assert pairs[1][0] == f"industry={row[1]}"
    assert [n for n, _ in pairs[4:]] == [*LEAD_SPEC.numeric, *LEAD_SPEC.binary]
    _, pairs = model.explain_row(("nowhere", *row[1:]))
    assert pairs[0][0] == "lead_source=other"
    assert "lead_source=other" in model.term_names


def test_a_split_credits_the_change_of_node_value(toy):
    # a stump: bias is the mean output over the training samples, the contribution the rest
    rows = toy_rows(500, seed=5)
    y = toy_labels(rows, seed=5)
    pipe = build_trees(TOY_SPEC, 0, max_iter=1, max_leaf_nodes=2, early_stopping=False)
    pipe.fit(to_matrix(TOY_SPEC, rows), y)
    model = CompiledTreeModel(pipe, TOY_SPEC)
    nodes = pipe.named_steps["clf"]._predictors[0][0].nodes
    left, right = nodes[1], nodes[2]
    mean = (left["count"] * left["value"] + right["count"] * right["value"]) / nodes[0]["count"]
    assert model.bias == pytest.approx(model.baseline + mean, abs=1e-15)
    _z, terms = model.explain_row(rows[0])
    split_feature = int(nodes[0]["feature_idx"])
    assert [i for i, (_, c) in enumerate(terms) if c] == [split_feature]


def test_json_round_trip_is_bit_exact(toy, leads):
    for data, spec, rows in ((toy, TOY_SPEC, _test_toy_rows()), (leads, LEAD_SPEC, leads["rows"])):
        model: CompiledTreeModel = data["model"]
        text = json.dumps(model.to_dict(), allow_nan=False)
        again = CompiledTreeModel.from_dict(json.loads(text), spec, calibration=model.calibration)
        assert again.to_dict() == model.to_dict()
        assert again.bias == model.bias
        for row in rows[:200]:
            assert again.explain_row(row) == model.explain_row(row)
        a = again.explain_columns(columns_from_rows(spec, rows))
        b = model.explain_columns(columns_from_rows(spec, rows))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def _tamper(d: dict[str, Any], case: str) -> None:
    tree = d["trees"][0]
    inner = tree["feature"].index(next(f for f in tree["feature"] if f >= 0))
    cat_node = (
        next(i for i, c in enumerate(tree["categorical"]) if c)
        if any(tree["categorical"])
        else None
    )
    match case:
        case "format":
            d["format"] = "junction.compiled-tree-model.v0"
        case "kind":
            d["kind"] = "linear"
        case "extra key":
            d["surprise"] = 1
        case "missing key":
            del d["baseline"]
        case "spec hash":
            d["feature_schema_hash"] = "0" * 64
        case "features":
            d["features"]["numeric"] = d["features"]["numeric"][::-1]
        case "baseline nan":
            d["baseline"] = math.nan
        case "baseline bool":
            d["baseline"] = True
        case "leaf value inf":
            tree["value"][-1] = math.inf
        case "threshold string":
            tree["threshold"][inner] = "-inf"
        case "child out of range":
            tree["right"][inner] = len(tree["feature"])
        case "child before parent":
            tree["left"][inner] = inner
        case "shared child":
            tree["right"][inner] = tree["left"][inner]
        case "count":
            tree["count"][inner] += 1
        case "feature out of range":
            tree["feature"][inner] = 99
        case "numeric split on a category":
            tree["categorical"][inner] = not tree["categorical"][inner]
        case "category code out of range":
            assert cat_node is not None
            tree["cat_left"][cat_node] = [0, 500]
        case "category codes unsorted":
            assert cat_node is not None
            tree["cat_left"][cat_node] = [1, 0]
        case "short array":
            tree["missing_left"].pop()
        case "tree keys":
            tree["extra"] = []
        case "no trees":
            d["trees"] = []
        case "duplicate category":
            d["categories"][0].append(d["categories"][0][0])
        case "known code":
            d["known"][0] = [-1]
        case _:
            raise AssertionError(case)


TAMPERINGS = [
    "format", "kind", "extra key", "missing key", "spec hash", "features", "baseline nan",
    "baseline bool", "leaf value inf", "threshold string", "child out of range",
    "child before parent", "shared child", "count", "feature out of range",
    "numeric split on a category", "category code out of range", "category codes unsorted",
    "short array", "tree keys", "no trees", "duplicate category", "known code",
]  # fmt: skip


@pytest.mark.parametrize("case", TAMPERINGS)
def test_tampered_dicts_are_refused(toy, case):
    d = copy.deepcopy(toy["model"].to_dict())
    # the first tree of the toy model splits on a categorical feature somewhere
    if case.startswith("category code") and not any(d["trees"][0]["categorical"]):
        d["trees"].insert(0, next(t for t in d["trees"] if any(t["categorical"])))
    _tamper(d, case)
    with pytest.raises(ModelLoadError) as err:
        CompiledTreeModel.from_dict(d, TOY_SPEC)
    assert err.value.context.get("key")


def test_a_linear_pipeline_is_not_a_tree_model(leads):
    _rows, x, y = lead_data(500, seed=3)
    with pytest.raises(ModelLoadError):
        CompiledTreeModel(build_linear(LEAD_SPEC, 0).fit(x, y), LEAD_SPEC)
    with pytest.raises(ModelLoadError):
        CompiledTreeModel(leads["pipe"], TOY_SPEC)


def test_linear_with_calibration_equals_calibrated_sklearn():
    """The linear model compiles through CompiledLeadModel; its calibration through Calibration."""
    from scoring.compiled import CompiledLeadModel

    _rows, x, y = lead_data(3000, seed=21)
    pipe = build_linear(LEAD_SPEC, 0).fit(x[:2000], y[:2000])
    test_rows, xt, _ = lead_data(400, seed=22)
    test_rows += _unseen_lead_rows(test_rows)
    xt = to_matrix(LEAD_SPEC, test_rows)
    for method in ("sigmoid", "isotonic"):
        cal = calibrate(pipe, x[2000:], y[2000:], method)
        compiled = CompiledLeadModel(pipe)
        calibration = Calibration.from_calibrated(cal)
        want = cal.predict_proba(xt)[:, 1]
        got = [calibration.apply_one(compiled.explain_row(r)[0]) for r in test_rows]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        z, _, _ = compiled.explain_columns(columns_from_rows(LEAD_SPEC, test_rows))
        np.testing.assert_allclose(calibration.apply(z), want, rtol=0, atol=1e-9)


def test_the_tree_model_travels_in_compiled_json(leads):
    from scoring.model_file import dump, load

    model: CompiledTreeModel = leads["model"]
    text = json.dumps(dump(model, model.calibration), allow_nan=False)
    again, calibration = load(json.loads(text))
    assert isinstance(again, CompiledTreeModel)
    assert calibration is not None
    assert calibration.to_dict() == model.calibration.to_dict()
    rows = leads["rows"][:100]
    want = leads["cal"].predict_proba(to_matrix(LEAD_SPEC, rows))[:, 1]
    got = [calibration.apply_one(again.explain_row(r)[0]) for r in rows]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_splits_on_missing_values_and_rare_categories_route_as_sklearn():
    # only whether the weight is missing matters: the trees split "NaN or not" (threshold +inf)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(2000):
        missing = rng.random() < 0.3
        colour = f"once{i}" if i < 40 else f"c{rng.integers(0, 5)}"
        weight = math.nan if missing else float(rng.normal())
        rows.append((colour, "s", weight, float(rng.normal()), 0.0))
        labels.append(int(rng.random() < (0.8 if missing else 0.2)))
    x = to_matrix(TOY_SPEC, rows)
    pipe = build_trees(TOY_SPEC, 0, max_iter=20, validation_fraction=0.3)
    pipe.fit(x, np.array(labels))
    model = CompiledTreeModel(pipe, TOY_SPEC)
    assert any("inf" in t["threshold"] for t in model.to_dict()["trees"])
    test = [*rows[:300], ("once3", "s", math.inf, 0.0, 1.0), ("new", "xl", math.nan, math.nan, 1.0)]
    xt = to_matrix(TOY_SPEC, test)
    np.testing.assert_array_equal([model.margin_row(r) for r in test], pipe.decision_function(xt))
    z, _, _ = model.explain_columns(columns_from_rows(TOY_SPEC, test))
    np.testing.assert_array_equal(z, pipe.decision_function(xt))
    again = CompiledTreeModel.from_dict(json.loads(json.dumps(model.to_dict())), TOY_SPEC)
    assert again.to_dict() == model.to_dict()
