"""The linear and tree pipelines over any spec: layout, defaults, parameters, learning."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from junction.core.errors import ConfigError
from scoring.compiled import CompiledLeadModel
from scoring.lead_spec import LEAD_SPEC
from scoring.pipelines import TREE_DEFAULTS, build_linear, build_trees
from scoring.spec import to_matrix
from tests.tree_support import TOY_SPEC, lead_data, toy_labels, toy_rows


def test_linear_pipeline_over_the_lead_spec_compiles():
    rows, x, y = lead_data(1500, seed=2)
    pipe = build_linear(LEAD_SPEC, 0).fit(x, y)
    compiled = CompiledLeadModel(pipe)
    z = pipe.decision_function(x[:50])
    np.testing.assert_allclose([compiled.explain_row(r)[0] for r in rows[:50]], z, atol=1e-9)


@pytest.mark.parametrize("build", [build_linear, build_trees], ids=["linear", "trees"])
def test_pipelines_learn_a_known_signal_on_any_spec(build):
    rows = toy_rows(3000, seed=4)
    y = toy_labels(rows, seed=4)
    x = to_matrix(TOY_SPEC, rows)
    if build is build_linear:
        # a linear model takes no NaN: the toy's missing numbers become 0 here
        x[:, 2:4] = np.nan_to_num(x[:, 2:4].astype(float))
    pipe = build(TOY_SPEC, 0).fit(x[:2400], y[:2400])
    assert list(pipe.named_steps) == ["pre", "clf"]
    # labels drawn from the true probabilities: even the true model stays near 0.72 AUC
    assert roc_auc_score(y[2400:], pipe.predict_proba(x[2400:])[:, 1]) > 0.65


def test_tree_defaults_and_overrides():
    params = build_trees(TOY_SPEC, 9, max_iter=17).named_steps["clf"].get_params()
    assert params["max_iter"] == 17
    assert params["random_state"] == 9
    assert params["categorical_features"] == [0, 1]
    for key in ("learning_rate", "max_leaf_nodes", "early_stopping", "validation_fraction"):
        assert params[key] == TREE_DEFAULTS[key]


@pytest.mark.parametrize("param", ["categorical_features", "loss", "random_state", "no_such"])
def test_tree_parameters_the_compiled_model_relies_on_are_fixed(param):
    with pytest.raises(ConfigError):
        build_trees(TOY_SPEC, 0, **{param: None})


def test_trees_are_deterministic_for_a_seed():
    rows = toy_rows(800, seed=8)
    y = toy_labels(rows, seed=8)
    x = to_matrix(TOY_SPEC, rows)
    a = build_trees(TOY_SPEC, 1, max_iter=20).fit(x, y).predict_proba(x)
    b = build_trees(TOY_SPEC, 1, max_iter=20).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(a, b)
