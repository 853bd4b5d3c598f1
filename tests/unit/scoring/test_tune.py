"""Cross-validation and Optuna tuning run on the training slice only, deterministically."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from junction.core.errors import ConfigError
from scoring.spec import to_matrix
from scoring.train import split_indices
from scoring.training_data import from_records, label_rule
from scoring.tune import INSTALL_HINT, cross_validate, training_slice, tune
from tests.training_support import SPEC, planted

ROWS = planted(1200, 21, signal=True)
TS = from_records(ROWS, SPEC, label_rule(SPEC), source={})


def test_the_training_slice_is_train_model_s_fit_and_calibration_rows() -> None:
    for calibration in (None, "sigmoid"):
        data = training_slice(TS.rows, TS.labels, seed=5, spec=SPEC, calibration=calibration)
        y = np.asarray(TS.labels)
        fit, cal, hold, split = split_indices(
            y, [None] * len(y), 5, calibration=calibration is not None
        )
        assert split == "random"
        assert data.n_holdout == len(hold)
        expected = np.sort(np.concatenate([fit, cal]))
        assert data.y.tolist() == y[expected].tolist()
        rows = to_matrix(SPEC, [SPEC.extract(TS.rows[i]) for i in expected.tolist()])
        assert (data.x == rows).all()


def test_the_time_split_keeps_the_newest_rows_out() -> None:
    times = [f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z" for i in range(len(TS.rows))]
    data = training_slice(TS.rows, TS.labels, seed=5, spec=SPEC, times=times)
    assert data.n_holdout == round(len(TS.rows) * 0.2)
    assert data.y.tolist() == TS.labels[: len(TS.rows) - data.n_holdout]


def test_cross_validation_is_seeded_and_sees_the_signal() -> None:
    data = training_slice(TS.rows, TS.labels, seed=1, spec=SPEC)
    a = cross_validate(data, SPEC, "logistic_regression", {"c": 1.0}, k=4, seed=1)
    b = cross_validate(data, SPEC, "logistic_regression", {"c": 1.0}, k=4, seed=1)
    assert a == b
    assert len(a.folds) == 4
    assert a.mean > 0.8
    assert a.sd == pytest.approx(float(np.std(a.folds)))
    assert a.to_dict()["k"] == 4


def test_cross_validation_refuses_too_many_folds() -> None:
    data = training_slice(TS.rows[:40], TS.labels[:40], seed=1, spec=SPEC)
    with pytest.raises(ConfigError, match="lower --cv"):
        cross_validate(data, SPEC, "logistic_regression", {}, k=30)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        cross_validate(data, SPEC, "logistic_regression", {}, k=1)


def test_unknown_parameters_are_refused() -> None:
    data = training_slice(TS.rows, TS.labels, seed=1, spec=SPEC)
    with pytest.raises(ConfigError, match="unknown logistic regression parameter"):
        cross_validate(data, SPEC, "logistic_regression", {"penalty": "l1"}, k=3)


def test_tuning_the_linear_model_is_deterministic_and_starts_from_the_defaults() -> None:
    pytest.importorskip("optuna")
    data = training_slice(TS.rows, TS.labels, seed=2, spec=SPEC)
    seen: list[tuple[int, float]] = []
    first = tune(
        data, SPEC, "logistic_regression", trials=4, k=3, seed=2, progress=lambda *a: seen.append(a)
    )
    again = tune(data, SPEC, "logistic_regression", trials=4, k=3, seed=2)
    assert first.params == again.params
    assert first.trials == again.trials
    assert first.trials[0][0] == {"c": 1.0}  # the defaults are tried first
    assert first.cv.mean == max(v for _, v in first.trials)
    assert [n for n, _ in seen] == [1, 2, 3, 4]
    assert first.to_dict()["best_params"] == first.params


def test_tuning_the_trees_searches_their_space_and_keeps_fixed_params() -> None:
    pytest.importorskip("optuna")
    data = training_slice(TS.rows[:600], TS.labels[:600], seed=3, spec=SPEC)
    result = tune(
        data, SPEC, "hist_gradient_boosting", trials=3, k=3, seed=3, fixed={"max_iter": 30}
    )
    assert result.params["max_iter"] == 30
    assert set(result.params) == {
        "max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization",
    }  # fmt: skip
    assert 0.01 <= result.params["learning_rate"] <= 0.3
    assert all(p["max_iter"] == 30 for p, _ in result.trials)


def test_tuning_xgboost_searches_its_space_from_its_defaults() -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("xgboost")
    from scoring._xgb_sklearn import XGB_DEFAULTS

    data = training_slice(TS.rows[:600], TS.labels[:600], seed=3, spec=SPEC)
    result = tune(data, SPEC, "xgboost", trials=2, k=3, seed=3, fixed={"n_estimators": 40})
    first = result.trials[0][0]
    assert first == {
        "n_estimators": 40,
        **{
            k: XGB_DEFAULTS[k]
            for k in ("learning_rate", "max_depth", "min_child_weight", "subsample")
        },
    }
    assert set(result.params) == set(first)
    assert 2 <= result.params["max_depth"] <= 6
    assert result.cv.mean > 0.6


def test_without_optuna_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    data = training_slice(TS.rows, TS.labels, seed=2, spec=SPEC)
    with pytest.raises(ConfigError, match=r"junction-hub\[tune\]") as info:
        tune(data, SPEC, "logistic_regression", trials=2)
    assert info.value.user_message == INSTALL_HINT
