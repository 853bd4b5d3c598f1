"""The plain-JSON file of a compiled model (``compiled.json``): kind, spec, numbers, calibration.

Format ``junction.compiled-model.v2``::

    {"format": "junction.compiled-model.v2", "kind": "linear" | "trees" | "xgb_trees",
     "feature_schema_hash": "...", "spec": {...}, "model": {...}, "calibration": {...} | null}

``model`` is the kind's own dict (:meth:`scoring.compiled.CompiledLinearModel.to_dict`,
:meth:`scoring.trees.CompiledTreeModel.to_dict`,
:meth:`scoring.xgb.CompiledXgbModel.to_dict`); ``calibration`` maps the model's margin to a
probability (:mod:`scoring.calibration`; ``null`` is the logistic function).  A file of the
earlier format ``junction.compiled-lead-model.v1`` is a linear lead model without calibration.

Everything read here comes from disk and is validated before use: a malformed, inconsistent or
foreign file raises :class:`~junction.core.errors.ModelLoadError`, never a model that would
score wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from junction.core.errors import ModelLoadError
from scoring._compiled_format import FORMAT as LINEAR_V1
from scoring.compiled import CompiledLinearModel
from scoring.spec import FeatureColumns, FeatureSpec, spec_from_dict

FILE_FORMAT = "junction.compiled-model.v2"
KINDS = ("linear", "trees", "xgb_trees")


class CompiledModel(Protocol):
    """What every compiled model kind offers the scorer."""

    kind: ClassVar[str]
    spec: FeatureSpec
    term_names: list[str]

    def explain_row(self, row: Sequence[Any]) -> tuple[float, list[tuple[str, float]]]:
        """The margin of one feature row and each feature's ``(term name, contribution)``."""
        ...

    def explain_columns(
        self, cols: FeatureColumns
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.intp]]:
        """Margins ``(n,)``, contributions ``(n, f)`` and term ids ``(n, f)`` of a batch."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The model's numbers as plain JSON-ready data."""
        ...


class Calibrator(Protocol):
    """Maps a model's margin to a calibrated probability."""

    method: str

    def apply_one(self, z: float) -> float:
        """The probability of one margin."""
        ...

    def apply(self, z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The probabilities of an array of margins."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The calibration as plain JSON-ready data."""
        ...


def dump(model: CompiledModel, calibration: Calibrator | None) -> dict[str, Any]:
    """The ``compiled.json`` content of ``model`` and its calibration."""
    return {
        "format": FILE_FORMAT,
        "kind": model.kind,
        "feature_schema_hash": model.spec.schema_hash,
        "spec": model.spec.to_dict(),
        "model": model.to_dict(),
        "calibration": None if calibration is None else calibration.to_dict(),
    }


def _bad(key: str, problem: str) -> ModelLoadError:
    return ModelLoadError(
        "the compiled model is malformed", context={"key": key, "problem": problem}
    )


def load(d: Any) -> tuple[CompiledModel, Calibrator | None]:
    """Rebuild the model and calibration of a ``compiled.json`` (either format).

    Raises:
        ModelLoadError: the content is malformed, of an unknown kind or inconsistent.
    """
    if not isinstance(d, Mapping):
        raise _bad("", "not an object")
    if d.get("format") == LINEAR_V1:
        return CompiledLinearModel.from_dict(d), None
    if d.get("format") != FILE_FORMAT:
        raise _bad("format", f"expected {FILE_FORMAT}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise _bad("kind", f"expected one of {KINDS}")
    spec = spec_from_dict(d.get("spec"))  # type: ignore[arg-type]  # checked inside
    if d.get("feature_schema_hash") != spec.schema_hash:
        raise ModelLoadError(
            "the compiled model was made for other features than its spec computes",
            context={"expected": spec.schema_hash, "found": str(d.get("feature_schema_hash"))},
        )
    body = d.get("model")
    if not isinstance(body, Mapping):
        raise _bad("model", "not an object")
    model: CompiledModel
    if kind == "linear":
        model = CompiledLinearModel.from_dict({**body, "spec": d["spec"]})
    elif kind == "xgb_trees":
        from scoring.xgb import CompiledXgbModel  # imports neither XGBoost nor scikit-learn

        model = CompiledXgbModel.from_dict(body, spec)
    else:
        from scoring.trees import CompiledTreeModel

        model = CompiledTreeModel.from_dict(body, spec)
    if model.spec.schema_hash != spec.schema_hash:
        raise _bad("model", "its spec differs from the file's")
    raw_cal = d.get("calibration")
    if raw_cal is None:
        return model, None
    from scoring.calibration import Calibration

    return model, Calibration.from_dict(raw_cal)
