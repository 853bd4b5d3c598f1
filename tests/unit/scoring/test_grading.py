"""Grade thresholds from the data: cuts by shares, ties, validation, the card's thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from junction.core.errors import ConfigError
from junction.pipeline.config import ScoringConfig
from scoring.grading import (
    DEFAULT_THRESHOLDS,
    card_thresholds,
    check_shares,
    check_thresholds,
    grade_shares,
    holdout_proba,
    thresholds_for_shares,
)
from scoring.registry import save_model
from scoring.sklearn_model import SklearnLeadScorer
from scoring.synthetic import generate_leads
from scoring.train import train_lead_model


def test_shares_of_a_low_base_rate_model_grade_as_asked() -> None:
    # an 11 % base-rate model: fixed default thresholds grade (almost) everything D
    rng = np.random.default_rng(1)
    proba = rng.beta(2.0, 16.0, size=5000)  # mean 0.11
    assert grade_shares(proba, DEFAULT_THRESHOLDS)["D"] > 0.9
    a, b, c = thresholds_for_shares(proba, (0.1, 0.2, 0.3))
    assert 1.0 >= a > b > c >= 0.0
    got = grade_shares(proba, (a, b, c))
    assert got == pytest.approx({"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4}, abs=0.001)


def test_cuts_fall_between_neighbouring_values() -> None:
    proba = np.arange(100) / 100.0  # 0.00 .. 0.99
    a, b, c = thresholds_for_shares(proba, (0.1, 0.2, 0.3))
    assert (a, b, c) == pytest.approx((0.895, 0.695, 0.395))
    assert grade_shares(proba, (a, b, c)) == pytest.approx({"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4})


def test_ties_never_straddle_a_grade_and_cuts_stay_strictly_decreasing() -> None:
    # isotonic calibration gives steps: 40 % of the rows share the top value
    proba = np.array([0.6] * 40 + [0.3] * 30 + [0.2] * 20 + [0.1] * 10)
    a, b, c = thresholds_for_shares(proba, (0.1, 0.2, 0.3))
    assert a > b > c
    shares = grade_shares(proba, (a, b, c))
    # each step lies wholly in one grade: the bands are the steps, not the asked shares
    assert shares == pytest.approx({"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1})


def test_shares_that_take_every_row_leave_d_empty() -> None:
    proba = np.linspace(0.01, 0.5, 50)
    cuts = thresholds_for_shares(proba, (0.2, 0.3, 0.5))
    assert grade_shares(proba, cuts)["D"] == 0.0
    assert cuts[2] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("proba", "shares", "message"),
    [
        pytest.param(np.full(100, 0.2), (0.1, 0.2, 0.3), "distinct", id="one-value"),
        pytest.param([0.1, 0.2] * 50, (0.1, 0.2, 0.3), "distinct", id="two-values"),
        pytest.param(np.linspace(0, 1, 10), (0.1, 0.2, 0.3), "at least 20", id="too-few"),
        pytest.param(np.linspace(0, 1.5, 50), (0.1, 0.2, 0.3), r"\[0, 1\]", id="above-1"),
        pytest.param([*np.linspace(0, 1, 50), np.nan], (0.1, 0.2, 0.3), "finite", id="nan"),
        pytest.param(np.linspace(0, 1, 50), (0.5, 0.4, 0.3), "at most 1", id="sum-above-1"),
        pytest.param(np.linspace(0, 1, 50), (0.1, 0.0, 0.3), "above 0", id="zero-share"),
        pytest.param(np.linspace(0, 1, 50), (0.1, 0.2), "three numbers", id="two-shares"),
    ],
)
def test_unusable_inputs_are_refused(proba, shares, message) -> None:
    with pytest.raises(ConfigError, match=message):
        thresholds_for_shares(proba, shares)


@pytest.mark.parametrize(
    "bad",
    [(0.5, 0.5, 0.2), (0.2, 0.4, 0.6), (1.2, 0.5, 0.1), (0.5, 0.2, -0.1), (0.5, 0.2)],
    ids=["equal", "increasing", "above-1", "below-0", "two"],
)
def test_check_thresholds_refuses_what_the_scorer_would(bad) -> None:
    with pytest.raises(ConfigError, match="thresholds"):
        check_thresholds(bad)


def test_check_shares_accepts_a_full_split() -> None:
    assert check_shares([0.25, 0.25, 0.5]) == (0.25, 0.25, 0.5)


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({"grade_thresholds": {"A": 0.3, "B": 0.2, "C": 0.1}}, (0.3, 0.2, 0.1)),
        ({}, None),
        ({"grade_thresholds": {"A": 0.3, "B": 0.3, "C": 0.1}}, None),
        ({"grade_thresholds": {"A": True, "B": 0.2, "C": 0.1}}, None),
        ({"grade_thresholds": [0.3, 0.2, 0.1]}, None),
    ],
    ids=["valid", "absent", "not-decreasing", "bool", "list"],
)
def test_card_thresholds(card, expected) -> None:
    assert card_thresholds(card) == expected


@pytest.fixture(scope="module")
def low_rate_model():
    leads = generate_leads(2000, 5)
    labels = [lead["converted"] for lead in leads]
    return train_lead_model(leads, labels, seed=5), leads, labels


def test_holdout_probabilities_are_the_trainer_s_holdout(low_rate_model) -> None:
    from sklearn.metrics import roc_auc_score

    from scoring.train import _time_of, split_indices

    trained, leads, labels = low_rate_model
    proba = holdout_proba(trained)
    assert len(proba) == trained.n_holdout
    y = np.asarray(labels)
    stamps = [_time_of(lead.get("created_at")) for lead in leads]
    if trained.split != "time":
        stamps = [None] * len(leads)
    _, _, hold, _ = split_indices(y, stamps, trained.seed, calibration=False)
    # the same rows in the same order: the card's holdout AUC comes back
    assert roc_auc_score(y[hold], proba) == pytest.approx(trained.metrics["roc_auc"])


def test_the_scorer_grades_by_the_card_unless_thresholds_are_given(
    tmp_path, low_rate_model
) -> None:
    trained, leads, _labels = low_rate_model
    cuts = thresholds_for_shares(holdout_proba(trained))
    vdir = save_model(trained, tmp_path, "lead-score", training_data={"n": 1}, thresholds=cuts)
    assert json.loads((vdir / "card.json").read_text())["grade_thresholds"] == dict(
        zip("ABC", cuts, strict=True)
    )
    assert SklearnLeadScorer.load(vdir).thresholds == cuts
    assert SklearnLeadScorer.load(vdir, thresholds=(0.9, 0.8, 0.7)).thresholds == (0.9, 0.8, 0.7)
    grades = {s.grade for s in SklearnLeadScorer.load(vdir).score(leads[:400])}
    assert grades == {"A", "B", "C", "D"}
    # a card without thresholds falls back to the default
    card = json.loads((vdir / "card.json").read_text())
    del card["grade_thresholds"]
    (vdir / "card.json").write_text(json.dumps(card))
    assert SklearnLeadScorer.load(vdir).thresholds == DEFAULT_THRESHOLDS


def test_the_scoring_config_leaves_thresholds_to_the_card_unless_set() -> None:
    unset = ScoringConfig()
    assert unset.configured_thresholds is None
    assert unset.thresholds == DEFAULT_THRESHOLDS  # what scorers without a card use
    set_ = ScoringConfig.model_validate({"thresholds": [0.4, 0.2, 0.1]})
    assert set_.configured_thresholds == set_.thresholds == (0.4, 0.2, 0.1)
    assert ScoringConfig.model_validate(set_.model_dump()) == set_
