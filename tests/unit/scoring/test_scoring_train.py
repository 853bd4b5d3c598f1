"""Training: the model learns the known synthetic signal and reports honest metrics."""

from __future__ import annotations

import numpy as np
import pytest

from junction.core.errors import ConfigError
from scoring.compiled import CompiledLeadModel
from scoring.features import BINARY, NUMERIC
from scoring.synthetic import TRUE_LOGIT, generate_leads
from scoring.train import evaluate, train_lead_model


@pytest.fixture(scope="module")
def trained():
    leads = generate_leads(20_000, seed=77)
    return train_lead_model(leads, [x["converted"] for x in leads], seed=77)


def test_holdout_metrics_show_the_signal_is_learned(trained):
    m = trained.metrics
    assert set(m) == {"roc_auc", "pr_auc", "brier", "lift_top_decile", "base_rate"}
    assert m["roc_auc"] >= 0.75
    assert m["pr_auc"] > 1.5 * m["base_rate"]  # far better than a random ranking
    assert m["brier"] < m["base_rate"] * (1 - m["base_rate"])  # better than the base rate
    assert m["lift_top_decile"] > 2.0
    assert trained.split == "time"
    assert (trained.n_train, trained.n_holdout, trained.skipped) == (16_000, 4_000, 0)


def _learned(trained):
    model = CompiledLeadModel(trained.pipeline)
    # one-hot terms carry their coefficient; numerics their coefficient per raw unit
    coef = dict(zip(model.term_names, model.term_coef.tolist(), strict=False))
    coef |= dict(zip(NUMERIC, model.k.tolist(), strict=True))
    coef |= dict(zip(BINARY, model.bin_coef.tolist(), strict=True))
    return coef


@pytest.mark.parametrize(
    ("feature", "high", "low"),
    [
        ("lead_source", "referral", "purchased_list"),
        ("lead_source", "event", "cold_call"),
        ("industry", "software", "government"),
        ("seniority", "c_level", "individual"),
        ("country", "US", "FR"),
    ],
)
def test_largest_categorical_effects_keep_their_sign(trained, feature, high, low):
    coef = _learned(trained)
    true = getattr(TRUE_LOGIT, feature)
    assert true[high] > true[low]
    assert coef[f"{feature}={high}"] > coef[f"{feature}={low}"]


def test_categorical_effects_correlate_with_the_truth(trained):
    coef = _learned(trained)
    for feature in ("lead_source", "industry", "seniority"):
        truth = getattr(TRUE_LOGIT, feature)
        cats = sorted(truth)
        r = np.corrcoef([truth[c] for c in cats], [coef[f"{feature}={c}"] for c in cats])[0, 1]
        assert r > 0.9, feature


@pytest.mark.parametrize(
    "name", ["has_phone", "free_email", "log_employees", "visits", "email_opens", "page_views"]
)
def test_numeric_and_binary_effects_keep_their_sign(trained, name):
    assert np.sign(_learned(trained)[name]) == np.sign(getattr(TRUE_LOGIT, name))


def test_invalid_training_rows_are_skipped_and_counted():
    leads = generate_leads(2_000, seed=5)
    leads[0]["employees"] = -3
    model = train_lead_model(leads, [x["converted"] for x in leads], seed=5)
    assert model.skipped == 1
    assert model.n_train + model.n_holdout == 1_999


def test_random_split_when_creation_times_are_missing():
    leads = generate_leads(2_000, seed=6)
    for lead in leads:
        lead["created_at"] = None
    model = train_lead_model(leads, [x["converted"] for x in leads], seed=6)
    assert model.split == "random"


@pytest.mark.parametrize(
    ("rows", "labels"),
    [
        ([{}] * 50, [0] * 50),  # one class
        ([{}] * 5, [0, 1, 0, 1, 0]),  # too few rows
        ([{}] * 3, [0, 1]),  # length mismatch
    ],
    ids=["one-class", "too-few", "mismatch"],
)
def test_untrainable_data_is_a_config_error(rows, labels):
    with pytest.raises(ConfigError):
        train_lead_model(rows, labels, seed=1)


def test_evaluate_on_a_known_ranking():
    y = np.array([0] * 90 + [1] * 10)
    perfect = np.linspace(0, 1, 100)
    m = evaluate(y, perfect)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["lift_top_decile"] == pytest.approx(10.0)
    assert m["base_rate"] == pytest.approx(0.1)
