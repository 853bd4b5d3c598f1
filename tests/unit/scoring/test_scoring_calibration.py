"""Calibration: the compiled form gives sklearn's calibrated probabilities; dicts are validated."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from junction.core.errors import ConfigError, ModelLoadError
from scoring.calibration import Calibration, logistic
from scoring.pipelines import build_trees, calibrate
from scoring.spec import to_matrix
from tests.tree_support import TOY_SPEC, toy_labels, toy_rows


@pytest.fixture(scope="module")
def fitted():
    rows = toy_rows(1500, seed=7)
    x, y = to_matrix(TOY_SPEC, rows), toy_labels(rows, seed=7)
    pipe = build_trees(TOY_SPEC, 0, max_iter=30, early_stopping=False).fit(x[:1000], y[:1000])
    return pipe, x, y


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_compiled_calibration_matches_sklearn(fitted, method):
    pipe, x, y = fitted
    cal = calibrate(pipe, x[1000:], y[1000:], method)
    compiled = Calibration.from_calibrated(cal)
    assert compiled.method == method
    # margins beyond the calibration slice's range too (isotonic clips)
    z = np.concatenate([pipe.decision_function(x), [-50.0, -3.5, 0.0, 3.5, 50.0]])
    ref = cal.calibrated_classifiers_[0].calibrators[0].predict(z)
    np.testing.assert_allclose(compiled.apply(z), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose([compiled.apply_one(v) for v in z.tolist()], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        compiled.apply(pipe.decision_function(x)), cal.predict_proba(x)[:, 1], atol=1e-12
    )


def test_isotonic_hits_its_thresholds_exactly():
    c = Calibration.from_dict({"method": "isotonic", "x": [-1.0, 0.0, 2.0], "y": [0.1, 0.1, 0.9]})
    assert [c.apply_one(v) for v in (-5.0, -1.0, -0.5, 0.0, 1.0, 2.0, 9.0)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.1, 0.5, 0.9, 0.9], abs=1e-15
    )
    single = Calibration.from_dict({"method": "isotonic", "x": [0.3], "y": [0.4]})
    assert single.apply_one(-1.0) == single.apply_one(7.0) == 0.4
    np.testing.assert_array_equal(single.apply(np.array([-1.0, 7.0])), [0.4, 0.4])


def test_none_is_the_logistic_and_never_overflows():
    c = Calibration.none()
    for z in (-800.0, -1.0, 0.0, 2.5, 800.0):
        assert c.apply_one(z) == pytest.approx(1 / (1 + math.exp(-max(min(z, 700), -700))))
    assert logistic(800.0) == 1.0
    assert logistic(-800.0) == 0.0
    np.testing.assert_allclose(c.apply(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])
    s = Calibration.from_dict({"method": "sigmoid", "a": -1.0, "b": 0.0})
    assert s.apply_one(-1e6) == 0.0
    assert s.apply(np.array([1e6]))[0] == 1.0


@pytest.mark.parametrize(
    "d",
    [
        {"method": "none"},
        {"method": "sigmoid", "a": -1.2345678901234567, "b": 0.1},
        {"method": "isotonic", "x": [-2.0, 0.1, 3.0], "y": [0.0, 0.30000000000000004, 1.0]},
    ],
    ids=["none", "sigmoid", "isotonic"],
)
def test_dict_round_trip_is_bit_exact(d):
    again = Calibration.from_dict(json.loads(json.dumps(Calibration.from_dict(d).to_dict())))
    assert again.to_dict() == d


@pytest.mark.parametrize(
    ("d", "key"),
    [
        ([], "calibration.method"),
        ({"method": "platt"}, "calibration.method"),
        ({"method": "none", "a": 1.0}, "calibration.a"),
        ({"method": "sigmoid", "a": 1.0}, "calibration.b"),
        ({"method": "sigmoid", "a": math.inf, "b": 0.0}, "calibration.a"),
        ({"method": "sigmoid", "a": "1", "b": 0.0}, "calibration.a"),
        ({"method": "sigmoid", "a": True, "b": 0.0}, "calibration.a"),
        ({"method": "isotonic", "x": [], "y": []}, "calibration.x"),
        ({"method": "isotonic", "x": [0.0, 1.0], "y": [0.5]}, "calibration.y"),
        ({"method": "isotonic", "x": [0.0, 0.0], "y": [0.1, 0.2]}, "calibration.x"),
        ({"method": "isotonic", "x": [0.0, 1.0], "y": [0.3, 0.2]}, "calibration.y"),
        ({"method": "isotonic", "x": [0.0, 1.0], "y": [0.3, 1.2]}, "calibration.y"),
        ({"method": "isotonic", "x": [0.0, math.nan], "y": [0.1, 0.2]}, "calibration.x"),
        ({"method": "isotonic", "x": "0,1", "y": [0.1, 0.2]}, "calibration.x"),
    ],
)
def test_malformed_dicts_are_refused(d, key):
    with pytest.raises(ModelLoadError) as err:
        Calibration.from_dict(d)
    assert err.value.context["key"] == key


def test_calibrate_refuses_bad_input(fitted):
    pipe, x, y = fitted
    with pytest.raises(ConfigError):
        calibrate(pipe, x[:50], np.zeros(50, dtype=np.int64))
    with pytest.raises(ConfigError):
        calibrate(pipe, x[:50], y[:50], "temperature")  # type: ignore[arg-type]


def test_temperature_scaling_is_not_compiled(fitted):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    pipe, x, y = fitted
    cal = CalibratedClassifierCV(FrozenEstimator(pipe), method="temperature").fit(
        x[1000:], y[1000:]
    )
    with pytest.raises(ModelLoadError):
        Calibration.from_calibrated(cal)
