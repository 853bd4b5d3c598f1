"""Training sets: label rules, column checks with fixes, the engine learning a planted signal."""

from __future__ import annotations

import pytest

from junction.core.errors import ConfigError
from scoring.lead_spec import LEAD_SPEC
from scoring.tabular import TabularSpec
from scoring.train import train_model
from scoring.training_data import (
    LabelRule,
    from_labelled,
    from_records,
    label_rule,
    source_fields,
)
from tests.training_support import SPEC, planted

UNLABELLED_SPEC = TabularSpec.model_validate(
    {"name": "nolabel", "features": [{"name": "x1", "kind": "numeric"}]}
)


def test_the_spec_label_is_the_default_rule() -> None:
    rule = label_rule(SPEC)
    assert (rule.column, rule.positive, rule.negative) == ("outcome", ("won",), ("lost",))
    assert [rule.label(v) for v in ("won", " lost ", "pending", "", None)] == [
        1,
        0,
        None,
        None,
        None,
    ]


def test_the_lead_spec_reads_converted_with_true_words() -> None:
    rule = label_rule(LEAD_SPEC)
    assert rule.column == "converted"
    assert [rule.label(v) for v in ("1", "Yes", "TRUE", True, "0", "no", False, "maybe", "")] == [
        1, 1, 1, 1, 0, 0, 0, None, None,
    ]  # fmt: skip


def test_overrides_replace_the_column_and_positive_values() -> None:
    rule = label_rule(SPEC, "stage", ["closed won", "won"])
    assert (rule.column, rule.negative) == ("stage", None)
    assert [rule.label(v) for v in ("won", "closed won", "open")] == [1, 1, 0]
    # positive values alone keep the spec's column
    assert label_rule(SPEC, None, ["lost"]).column == "outcome"


def test_a_spec_without_label_needs_a_label_column() -> None:
    with pytest.raises(ConfigError, match="--label-column"):
        label_rule(UNLABELLED_SPEC)
    assert label_rule(UNLABELLED_SPEC, "y").column == "y"


def test_empty_positive_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="--positive"):
        LabelRule("y", ())


def test_source_fields_follow_the_spec() -> None:
    assert source_fields(SPEC) == ("x1", "x2", "Tier")
    assert "lead_source" in source_fields(LEAD_SPEC)


def test_rows_keep_only_the_fields_the_spec_reads_and_count_unlabelled() -> None:
    rows = planted(50, 1, signal=True)
    rows[3]["outcome"] = ""
    rows[4]["outcome"] = "pending"
    ts = from_records(iter(rows), SPEC, label_rule(SPEC), source={"source": "test"})
    assert len(ts.rows) == 48
    assert ts.unlabelled == 2
    assert set(ts.rows[0]) == {"x1", "x2", "Tier", "outcome"}  # call_seconds is not kept
    assert ts.times is None
    card = ts.card()
    assert card["n"] == 48
    assert card["positives"] == ts.positives
    assert card["label"] == {"column": "outcome", "positive": ["won"], "negative": ["lost"]}
    assert card["time_column"] == "none (random split)"


def test_a_created_at_column_becomes_the_time_column() -> None:
    rows = [
        dict(r, created_at=f"2026-01-{1 + i % 28:02d}T00:00:00Z")
        for i, r in enumerate(planted(30, 2, signal=True))
    ]
    ts = from_records(rows, SPEC, label_rule(SPEC), source={})
    assert ts.times is not None
    assert ts.times[0] == "2026-01-01T00:00:00Z"
    with pytest.raises(ConfigError, match="no time column 'when'"):
        from_records(rows, SPEC, label_rule(SPEC), source={}, time_column="when")


def test_a_missing_label_column_names_the_fix() -> None:
    rows = [{k: v for k, v in r.items() if k != "outcome"} for r in planted(10, 3, signal=True)]
    with pytest.raises(ConfigError, match="no label column 'outcome': pass --label-column"):
        from_records(rows, SPEC, label_rule(SPEC), source={})


def test_a_missing_feature_column_is_refused_for_a_declared_spec() -> None:
    rows = [{k: v for k, v in r.items() if k != "Tier"} for r in planted(10, 3, signal=True)]
    with pytest.raises(ConfigError, match="lacks columns") as info:
        from_records(rows, SPEC, label_rule(SPEC), source={})
    assert info.value.context == {"missing": "Tier"}


def test_the_lead_spec_tolerates_absent_optional_fields_but_not_all() -> None:
    rows = [
        {"lead_source": "web", "email": f"a{i}@x.example", "converted": str(i % 2)}
        for i in range(20)
    ]
    ts = from_records(rows, LEAD_SPEC, label_rule(LEAD_SPEC), source={})
    assert "industry" in ts.missing_columns
    assert ts.positives == 10
    with pytest.raises(ConfigError, match="none of the lead spec's fields: pass --spec"):
        from_records([{"foo": "1", "converted": "1"}], LEAD_SPEC, label_rule(LEAD_SPEC), source={})


def test_no_positive_rows_shows_the_few_label_values_and_the_fix() -> None:
    rows = planted(40, 4, signal=True)
    with pytest.raises(ConfigError, match=r"no positive rows.*values: lost, won.*--positive"):
        from_records(rows, SPEC, label_rule(SPEC, None, ["yes"]), source={})


def test_label_values_that_could_be_personal_data_are_not_shown() -> None:
    rows = [{"x1": "1", "x2": "2", "Tier": "a", "email": f"p{i}@x.example"} for i in range(20)]
    with pytest.raises(ConfigError) as info:
        from_records(rows, SPEC, label_rule(SPEC, "email", ["nobody"]), source={})
    assert "many or long distinct values" in str(info.value)
    assert "@" not in str(info.value)


def test_no_negative_rows_is_refused() -> None:
    rows = [dict(r, outcome="won") for r in planted(20, 5, signal=True)]
    with pytest.raises(ConfigError, match="no negative rows"):
        from_records(rows, SPEC, label_rule(SPEC), source={})


def test_no_rows_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="no rows"):
        from_records([], SPEC, label_rule(SPEC), source={"source": "csv"})


def test_store_pairs_need_outcomes_of_both_classes() -> None:
    source = {"source": "store", "pipeline": "leads", "outcome_kind": "converted"}
    with pytest.raises(ConfigError, match="no labelled records") as info:
        from_labelled([], LEAD_SPEC, source=source)
    assert info.value.context == {"pipeline": "leads", "outcome_kind": "converted"}
    with pytest.raises(ConfigError, match="no negative rows"):
        from_labelled([({"email": "a@x.example"}, 1)], LEAD_SPEC, source=source)
    ts = from_labelled(
        [({"lead_source": "web"}, 1), ({"lead_source": "ad"}, 0)], LEAD_SPEC, source=source
    )
    assert ts.labels == [1, 0]
    assert ts.card()["pipeline"] == "leads"


@pytest.mark.parametrize("algorithm", ["logistic_regression", "hist_gradient_boosting"])
def test_the_engine_learns_a_planted_signal_and_not_noise(algorithm: str) -> None:
    if algorithm == "hist_gradient_boosting":
        pytest.importorskip("scoring.trees")
    results = {}
    for signal in (True, False):
        ts = from_records(planted(3000, 11, signal=signal), SPEC, label_rule(SPEC), source={})
        trained = train_model(ts.rows, ts.labels, seed=3, spec=SPEC, algorithm=algorithm)
        results[signal] = trained.metrics["roc_auc"]
    assert results[True] > 0.80  # the planted logit gives ~0.86 in theory
    assert abs(results[False] - 0.5) < 0.07  # 600 holdout rows: AUC noise sd ~0.025
