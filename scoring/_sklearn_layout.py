"""Checks of a fitted ``ColumnTransformer`` + classifier pipeline, for the tree compilers.

:func:`scoring.trees.compile_pipeline` (scikit-learn's gradient boosting) and
:func:`scoring._xgb_sklearn.compile_pipeline` (XGBoost) read a fitted pipeline whose ``pre``
step puts the spec's categorical columns first (ordinal-encoded, unknown and missing values as
NaN), then the numerics and the flags as they are.  scikit-learn is imported inside the
functions: only compiling needs it, scoring does not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from junction.core.errors import ModelLoadError
from scoring.spec import FeatureSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _is_passthrough(est: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    # a fitted ColumnTransformer keeps "passthrough" as an identity FunctionTransformer
    return est == "passthrough" or (isinstance(est, FunctionTransformer) and est.func is None)


def _encodes_unknown_as_nan(enc: Any) -> bool:
    from sklearn.preprocessing import OrdinalEncoder

    return (
        isinstance(enc, OrdinalEncoder)
        and enc.handle_unknown == "use_encoded_value"
        and math.isnan(enc.unknown_value)
        and math.isnan(enc.encoded_missing_value)
    )


def check_layout(
    pipeline: Pipeline, spec: FeatureSpec, clf_type: type, what: str
) -> tuple[Any, Any]:
    """Return the fitted encoder (None without categoricals) and classifier of ``pipeline``.

    Args:
        pipeline: a fitted ``Pipeline([("pre", ColumnTransformer), ("clf", clf_type)])``.
        spec: the feature spec whose columns the pipeline must lay out.
        clf_type: the classifier class the ``clf`` step must be.
        what: the classifier's name in the error (``gradient boosting``).

    Raises:
        ModelLoadError: another pipeline, another column layout, or not a binary 0/1
            classifier over the spec's columns.
    """
    from sklearn.compose import ColumnTransformer

    pre = pipeline.named_steps.get("pre")
    clf: Any = pipeline.named_steps.get("clf")
    clf_ok = isinstance(clf, clf_type)  # a bool apart: clf stays Any for the checks below
    if not isinstance(pre, ColumnTransformer) or not clf_ok:
        raise ModelLoadError(f"the model is not a ColumnTransformer + {what} pipeline")
    n_cat, n_num = len(spec.categorical), len(spec.numeric)
    n_features = n_cat + n_num + len(spec.binary)
    layout = {name: (est, list(cols)) for name, est, cols in pre.transformers_}
    expected = {
        "cat": list(range(n_cat)),
        "num": list(range(n_cat, n_cat + n_num)),
        "bin": list(range(n_cat + n_num, n_features)),
    }
    enc = layout.get("cat", (None, []))[0]
    ok = (
        all(layout.get(k, (None, None))[1] == v for k, v in expected.items())
        and all(_is_passthrough(layout[k][0]) for k in ("num", "bin") if expected[k])
        and all(e == "drop" or not c for k, (e, c) in layout.items() if k not in expected)
        and (not n_cat or _encodes_unknown_as_nan(enc))
        and list(clf.classes_) == [0, 1]
        and clf.n_features_in_ == n_features
    )  # fmt: skip
    if not ok:
        raise layout_error()
    return enc, clf


def layout_error() -> ModelLoadError:
    """The error for a pipeline whose columns are not its feature spec's."""
    return ModelLoadError("the model's column layout does not match its feature spec")


def encoder_categories(enc: Any, n_cat: int) -> list[list[str]]:
    """The fitted ``OrdinalEncoder``'s categories per categorical feature, in code order.

    Raises:
        ModelLoadError: a category is not a string.
    """
    categories: list[list[str]] = []
    for cats in enc.categories_ if n_cat else []:
        values = list(cats)
        # a missing value seen in training sorts last and encodes to NaN, as unknown ones do
        while values and not isinstance(values[-1], str) and values[-1] != values[-1]:
            values.pop()
        if not all(isinstance(v, str) for v in values):
            raise ModelLoadError("the model's categories are not all strings")
        categories.append(values)
    return categories
