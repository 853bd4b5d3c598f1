"""Probability calibration compiled to a few numbers (no scikit-learn at score time).

A compiled model gives a margin ``z`` (the log-odds of a logistic regression, the raw margin
of the boosted trees); :class:`Calibration` turns it into the probability that
``CalibratedClassifierCV(FrozenEstimator(pipeline), method=...).predict_proba`` gives, where
the calibrator sees the pipeline's ``decision_function``, which is exactly ``z``:

* ``none``: ``1 / (1 + exp(-z))``, the uncalibrated model's own probability;
* ``sigmoid`` (Platt): ``1 / (1 + exp(a z + b))`` with sklearn's ``_SigmoidCalibration``
  ``a_`` and ``b_``;
* ``isotonic``: the piecewise-linear interpolation of ``IsotonicRegression``'s
  ``X_thresholds_`` / ``y_thresholds_``, ``z`` clipped to the first and last threshold
  (sklearn fits it with ``out_of_bounds="clip"``).

The dict form (:meth:`Calibration.to_dict`, :meth:`Calibration.from_dict`) is plain JSON whose
floats read back bit for bit; a dict from disk is validated and anything off raises
:class:`~junction.core.errors.ModelLoadError` naming the key.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from junction.core.errors import ModelLoadError
from scoring._json_checks import Checks

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV

FloatArray = npt.NDArray[np.float64]
METHODS = ("none", "sigmoid", "isotonic")
MAX_ISOTONIC_POINTS = 100_000


_CHECKS = Checks("the model's calibration is malformed", prefix="calibration.")
_bad, _number = _CHECKS.bad, _CHECKS.number


def logistic(z: float) -> float:
    """``1 / (1 + exp(-z))`` without overflow for any finite ``z``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _expit(z: FloatArray) -> FloatArray:
    # 0.5 * (1 + tanh(z / 2)) is the logistic function without overflow for any z
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


class Calibration:
    """A compiled probability calibration of a model's margin.

    Build it with :meth:`none`, :meth:`from_calibrated` (needs scikit-learn) or
    :meth:`from_dict`.

    Attributes:
        method: ``none``, ``sigmoid`` or ``isotonic``.
        a: the sigmoid slope (sigmoid only).
        b: the sigmoid offset (sigmoid only).
        x: the isotonic thresholds, strictly increasing (isotonic only).
        y: the isotonic values at ``x``, non-decreasing, in [0, 1] (isotonic only).
    """

    method: str
    a: float
    b: float
    x: list[float]
    y: list[float]

    def __init__(
        self,
        method: str,
        *,
        a: float = 0.0,
        b: float = 0.0,
        x: list[float] | None = None,
        y: list[float] | None = None,
    ) -> None:
        self.method = method
        self.a, self.b = a, b
        self.x, self.y = list(x or []), list(y or [])
        self._xa = np.array(self.x, dtype=np.float64)
        self._ya = np.array(self.y, dtype=np.float64)

    @classmethod
    def none(cls) -> Calibration:
        """No calibration: the model's own logistic of the margin."""
        return cls("none")

    @classmethod
    def from_calibrated(cls, calibrated: CalibratedClassifierCV) -> Calibration:
        """Compile the calibrator of a fitted ``CalibratedClassifierCV(FrozenEstimator(...))``.

        Raises:
            ModelLoadError: not one binary sigmoid or isotonic calibrator over a decision
                function (e.g. a cross-validated ensemble, or temperature scaling).
        """
        from sklearn.calibration import _SigmoidCalibration
        from sklearn.isotonic import IsotonicRegression

        fitted = getattr(calibrated, "calibrated_classifiers_", None)
        if not fitted or len(fitted) != 1 or len(fitted[0].calibrators) != 1:
            raise ModelLoadError("the calibration is not one binary calibrator of a fitted model")
        if not hasattr(fitted[0].estimator, "decision_function"):
            raise ModelLoadError("the calibrated model has no decision function")
        calibrator = fitted[0].calibrators[0]
        if fitted[0].method == "sigmoid" and isinstance(calibrator, _SigmoidCalibration):
            return cls.from_dict(
                {"method": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)}
            )
        if (
            fitted[0].method == "isotonic"
            and isinstance(calibrator, IsotonicRegression)
            and calibrator.out_of_bounds == "clip"
            and calibrator.increasing_
        ):
            return cls.from_dict(
                {
                    "method": "isotonic",
                    "x": np.asarray(calibrator.X_thresholds_, dtype=np.float64).tolist(),
                    "y": np.asarray(calibrator.y_thresholds_, dtype=np.float64).tolist(),
                }
            )
        raise ModelLoadError(
            "the calibration method cannot be compiled", context={"method": str(fitted[0].method)}
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (floats as Python floats, written by ``repr``)."""
        if self.method == "sigmoid":
            return {"method": "sigmoid", "a": self.a, "b": self.b}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "none"}

    @classmethod
    def from_dict(cls, d: Any) -> Calibration:
        """Rebuild a calibration from :meth:`to_dict` output, validating every value.

        Raises:
            ModelLoadError: an unknown method, a missing or extra key, a non-finite number,
                thresholds not strictly increasing, or values not non-decreasing in [0, 1].
        """
        if not isinstance(d, Mapping):
            raise _bad("method", "not an object")
        method = d.get("method")
        keys = {"none": {"method"}, "sigmoid": {"method", "a", "b"}}.get(
            str(method), {"method", "x", "y"}
        )
        if method not in METHODS:
            raise _bad("method", "unknown method")
        if set(d) != keys:
            extra = sorted(set(d) ^ keys)
            raise _bad(str(extra[0]), "unexpected or missing key")
        if method == "none":
            return cls("none")
        if method == "sigmoid":
            return cls("sigmoid", a=_number(d["a"], "a"), b=_number(d["b"], "b"))
        xs, ys = d["x"], d["y"]
        for key, values in (("x", xs), ("y", ys)):
            if not isinstance(values, list) or not 1 <= len(values) <= MAX_ISOTONIC_POINTS:
                raise _bad(key, "not a list of 1 to 100,000 numbers")
        if len(xs) != len(ys):
            raise _bad("y", "not as long as x")
        x = [_number(v, "x") for v in xs]
        y = [_number(v, "y") for v in ys]
        if any(hi <= lo for lo, hi in itertools.pairwise(x)):
            raise _bad("x", "not strictly increasing")
        if any(hi < lo for lo, hi in itertools.pairwise(y)):
            raise _bad("y", "not non-decreasing")
        if y[0] < 0.0 or y[-1] > 1.0:
            raise _bad("y", "not a probability")
        return cls("isotonic", x=x, y=y)

    def apply_one(self, z: float) -> float:
        """The calibrated probability of one margin (pure Python)."""
        if self.method == "sigmoid":
            return logistic(-(self.a * z + self.b))
        if self.method == "isotonic":
            x, y = self.x, self.y
            if z <= x[0]:
                return y[0]
            if z >= x[-1]:
                return y[-1]
            j = bisect_right(x, z)  # x[j - 1] <= z < x[j]
            x0, y0 = x[j - 1], y[j - 1]
            return y0 + (z - x0) * (y[j] - y0) / (x[j] - x0)
        return logistic(z)

    def apply(self, z: FloatArray) -> FloatArray:
        """The calibrated probabilities of an array of margins."""
        if self.method == "sigmoid":
            with np.errstate(over="ignore"):
                return _expit(-(self.a * z + self.b))
        if self.method == "isotonic":
            out: FloatArray = np.interp(np.clip(z, self._xa[0], self._xa[-1]), self._xa, self._ya)
            return out
        return _expit(z)

    def __repr__(self) -> str:
        return f"Calibration({self.method})"
