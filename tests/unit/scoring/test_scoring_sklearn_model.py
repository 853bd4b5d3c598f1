"""The compiled scorer: equal to scikit-learn, explained by its contributions, graded, batched."""

from __future__ import annotations

import math
from importlib.metadata import entry_points

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.core.errors import ConfigError, ScoringInputError
from schemas import Lead, Score
from scoring.base import PartialScoreColumns, Scorer
from scoring.batch_features import to_matrix
from scoring.features import extract
from scoring.registry import load_model
from scoring.sklearn_model import SklearnLeadScorer, _top_k


@pytest.fixture(scope="module")
def reference(default_version_dir, holdout_leads):
    """scikit-learn's own probabilities for the holdout leads."""
    pipeline = load_model(default_version_dir).pipeline
    return pipeline.predict_proba(to_matrix([extract(r) for r in holdout_leads]))[:, 1]


def test_scorer_meets_the_protocol_and_is_registered(scorer):
    assert isinstance(scorer, Scorer)
    assert (scorer.name, scorer.version) == ("lead-score", "1")
    (ep,) = [e for e in entry_points(group="junction.scorers") if e.name == "sklearn_lead"]
    assert ep.load() is SklearnLeadScorer


def test_score_one_equals_predict_proba(scorer, holdout_leads, reference):
    got = np.array([scorer.score_one(r).value for r in holdout_leads])
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-9)


def test_score_columns_equals_predict_proba(scorer, holdout_leads, reference):
    cols = scorer.score_columns(holdout_leads)
    assert isinstance(cols, PartialScoreColumns)
    assert cols.failed == {}
    assert len(cols) == len(holdout_leads)
    np.testing.assert_allclose(cols.values, reference, rtol=0, atol=1e-9)
    assert (cols.model, cols.model_version, cols.variant) == ("lead-score", "1", "production")


def test_pydantic_leads_score_like_dicts(scorer, holdout_leads):
    models = [Lead(**r) for r in holdout_leads[:200]]
    by_dict = scorer.score_columns(holdout_leads[:200])
    by_model = scorer.score_columns(models)
    assert by_model.values == pytest.approx(by_dict.values, abs=1e-12)
    assert by_model.factors == by_dict.factors
    assert scorer.score_one(models[0]) == scorer.score_one(holdout_leads[0])


def test_top_factors_are_the_largest_contributions(scorer, holdout_leads):
    cols = scorer.score_columns(holdout_leads)
    for i, record in enumerate(holdout_leads[:300]):
        z, terms = scorer.model.explain_row(extract(record))
        # the contributions add up to the log-odds of the score
        assert sum(c for _, c in terms) + scorer.model.intercept == pytest.approx(z)
        assert 1 / (1 + math.exp(-z)) == pytest.approx(cols.values[i], abs=1e-12)
        expected = sorted((t for t in terms if t[1]), key=lambda t: -abs(t[1]))[:3]
        one = scorer.score_one(record)
        assert [f.feature for f in one.top_factors] == [name for name, _ in expected]
        assert [f.contribution for f in one.top_factors] == [c for _, c in expected]
        assert [name for name, _ in cols.factors[i]] == [name for name, _ in expected]
        assert [c for _, c in cols.factors[i]] == pytest.approx([c for _, c in expected])


def test_factor_names_and_signs(default_version_dir):
    record = {"lead_source": "referral", "email": "x@gmail.com", "phone": "+14155550100"}
    scorer = SklearnLeadScorer.load(default_version_dir, top_k=20)
    factors = {f.feature: f.contribution for f in scorer.score_one(record).top_factors}
    assert factors["lead_source=referral"] > 0
    assert factors["free_email"] < 0
    assert factors["has_phone"] > 0
    assert "page_views" in factors  # zero page views lie below the mean: a real contribution
    assert not any(name.endswith("=other") for name in factors)


def test_unknown_category_contributes_nothing(scorer):
    base = {"lead_source": "referral", "industry": "software"}
    known = scorer.score_one(base)
    unknown = scorer.score_one(base | {"industry": "space_mining"})
    missing = scorer.score_one(base | {"industry": None})
    assert known.value != unknown.value != missing.value
    assert all("space_mining" not in f.feature for f in unknown.top_factors)


@pytest.mark.parametrize(
    ("value", "grade"),
    [(0.9, "A"), (0.75, "A"), (0.7499, "B"), (0.5, "B"), (0.3, "C"), (0.25, "C"), (0.1, "D")],
)
def test_grade_by_thresholds(scorer, value, grade):
    assert scorer.grade(value) == grade


def test_grades_follow_values_in_both_paths(default_version_dir, holdout_leads):
    scorer = SklearnLeadScorer.load(default_version_dir, thresholds=(0.4, 0.25, 0.1))
    cols = scorer.score_columns(holdout_leads)
    assert cols.grades == [scorer.grade(v) for v in cols.values]
    assert set(cols.grades) == {"A", "B", "C", "D"}
    assert [scorer.score_one(r).grade for r in holdout_leads[:100]] == cols.grades[:100]


@pytest.mark.parametrize("thresholds", [(0.5, 0.75, 0.25), (1.5, 0.5, 0.2), (0.5, 0.2)])
def test_invalid_thresholds_are_a_config_error(default_version_dir, thresholds):
    with pytest.raises(ConfigError):
        SklearnLeadScorer.load(default_version_dir, thresholds=thresholds)


def test_bad_records_fail_alone_in_score_columns(scorer, holdout_leads):
    batch = [dict(r) for r in holdout_leads[:50]]
    batch[7]["employees"] = -1
    batch[30]["page_views"] = "n/a"
    cols = scorer.score_columns(batch)
    assert list(cols.failed) == [7, 30]
    assert all(isinstance(e, ScoringInputError) for e in cols.failed.values())
    assert cols.failed[7].field == "employees"
    assert cols.failed[7].context["index"] == 7
    for i in cols.failed:
        assert math.isnan(cols.values[i])
        assert cols.grades[i] == ""
        assert cols.factors[i] == []
    good = [i for i in range(50) if i not in cols.failed]
    clean = scorer.score_columns([batch[i] for i in good])
    assert [cols.values[i] for i in good] == pytest.approx(clean.values, abs=1e-12)
    assert [cols.factors[i] for i in good] == clean.factors


def test_huge_numbers_saturate_the_probability(scorer):
    record = {"page_views": 1e308, "visits": 1e308, "email_opens": 1e308}
    assert scorer.score_one(record).value == 1.0
    assert scorer.score_columns([record]).values == [1.0]


def test_non_finite_log_odds_are_a_scoring_input_error(default_version_dir):
    # no finite input overflows the shipped model (every k < 1), so the guard is exercised by
    # scaling one numeric weight far up in a private scorer
    scorer = SklearnLeadScorer.load(default_version_dir)
    scorer.model.k[2] = 1e10
    scorer.model._num = tuple(
        (name, mean, k)
        for (name, mean, _), k in zip(scorer.model._num, scorer.model.k.tolist(), strict=True)
    )
    record = {"page_views": 1e308}
    with pytest.raises(ScoringInputError, match="too large"):
        scorer.score_one(record)
    cols = scorer.score_columns([{}, record])
    assert list(cols.failed) == [1]
    assert math.isnan(cols.values[1])
    assert cols.values[0] == scorer.score_one({}).value  # the other record is still scored
    assert cols.grades[0] == "D"


def test_score_returns_scores_or_raises_the_first_error(scorer, holdout_leads):
    scores = scorer.score(holdout_leads[:20])
    assert all(isinstance(s, Score) for s in scores)
    assert [s.value for s in scores] == scorer.score_columns(holdout_leads[:20]).values
    assert scores[3] == scorer.score_one(holdout_leads[3]).model_copy(
        update={"value": scores[3].value}
    )
    bad = [dict(r) for r in holdout_leads[:5]]
    bad[2]["email_opens"] = -3
    with pytest.raises(ScoringInputError) as info:
        scorer.score(bad)
    assert info.value.context["index"] == 2


def test_empty_batch(scorer):
    cols = scorer.score_columns([])
    assert (cols.values, cols.grades, cols.factors, cols.failed) == ([], [], [], {})
    assert scorer.score([]) == []


def test_score_is_a_valid_frozen_score(scorer, holdout_leads):
    score = scorer.score_one(holdout_leads[0])
    assert Score.model_validate(score.model_dump()) == score
    assert len(score.top_factors) == 3
    with pytest.raises(ValueError, match="frozen"):
        score.value = 0.5  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(0, 10, allow_nan=False),
            min_size=13,
            max_size=13,
        ),
        min_size=1,
        max_size=20,
    ),
    k=st.integers(min_value=1, max_value=13),
)
def test_top_k_is_the_stable_sort_prefix(rows: list[list[float]], k: int) -> None:
    magnitude = np.array(rows, dtype=np.float64)
    expected = np.argsort(-magnitude, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(_top_k(magnitude, k), expected)
