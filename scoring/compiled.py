"""The fitted lead pipeline compiled into plain lookups and arrays (no scikit-learn at score time).

A logistic regression over one-hot categories, standardized numerics and binary flags has the
log-odds ``z = b + sum_f coef[f, category_f] + sum_j k_j * (x_j - mean_j) + sum_b c_b * x_b``
with ``k_j = coef_j / scale_j``.  :class:`CompiledLeadModel` keeps exactly those numbers: per
categorical feature a dict from category to its coefficient, and short arrays for the rest.
Each term of the sum is also that feature's signed contribution to the log-odds, which is what
the top factors report.  Running ``Pipeline.predict_proba`` on one row costs ~4 ms (92 % in
the ColumnTransformer); this costs ~2 µs and agrees to 1e-12.

Terms are numbered: each category of each categorical feature, then one "other" term per
categorical feature (unseen categories, contribution 0), then the numerics and the flags.
``term_names[t]`` is the name a factor is reported under, e.g. ``lead_source=referral``.

The numbers travel as plain JSON (:meth:`CompiledLeadModel.to_dict` /
:meth:`~CompiledLeadModel.from_dict`, the registry's ``compiled.json``), so a scoring process
never imports scikit-learn: only compiling from a fitted pipeline does, inside ``_parts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from junction.core.errors import ModelLoadError
from scoring._compiled_format import FORMAT, parse
from scoring.lead_spec import LEAD_SPEC
from scoring.spec import FeatureColumns, FeatureSpec, spec_from_dict

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

_NO_TERM: tuple[str, float] = ("", 0.0)


def _parts(
    pipeline: Pipeline, spec: FeatureSpec
) -> tuple[OneHotEncoder, StandardScaler, LogisticRegression]:
    """Return the fitted parts, checking the pipeline is the one ``scoring.train`` builds."""
    # imported here: only compiling a fitted pipeline needs scikit-learn, scoring does not
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    n_cat, n_num, n_bin = len(spec.categorical), len(spec.numeric), len(spec.binary)
    pre, clf = pipeline.named_steps.get("pre"), pipeline.named_steps.get("clf")
    if not isinstance(pre, ColumnTransformer) or not isinstance(clf, LogisticRegression):
        raise ModelLoadError("the model is not a ColumnTransformer + LogisticRegression pipeline")
    layout = {
        name: (est, list(cols)) for name, est, cols in pre.transformers_ if name != "remainder"
    }
    cat, num, flags = layout.get("cat"), layout.get("num"), layout.get("bin")
    ok = (
        cat is not None
        and num is not None
        and flags is not None
        and isinstance(cat[0], OneHotEncoder)
        and cat[1] == list(range(n_cat))
        and cat[0].drop_idx_ is None
        and not getattr(cat[0], "infrequent_categories_", None)
        and isinstance(num[0], StandardScaler)
        and num[1] == list(range(n_cat, n_cat + n_num))
        and (flags[0] == "passthrough" or isinstance(flags[0], FunctionTransformer))
        and getattr(flags[0], "func", None) is None
        and flags[1] == list(range(n_cat + n_num, n_cat + n_num + n_bin))
        and list(clf.classes_) == [0, 1]
    )
    if not ok:
        raise ModelLoadError("the model's column layout does not match the lead feature spec")
    return cat[0], num[0], clf  # type: ignore[index]


class CompiledLinearModel:
    """Lookups and arrays equivalent to a fitted linear pipeline over a feature spec.

    Build it from a fitted pipeline (``CompiledLinearModel(pipeline, spec)``, needs
    scikit-learn) or from its plain-JSON form (:meth:`from_dict`, does not).

    Args:
        pipeline: the fitted linear pipeline (``pre`` + ``clf``) of :mod:`scoring.pipelines`.
        spec: the feature spec it was trained on (default: the built-in lead spec).

    Raises:
        ModelLoadError: the pipeline is not a linear pipeline over ``spec``'s layout.
    """

    kind: ClassVar[str] = "linear"
    spec: FeatureSpec
    intercept: float
    term_names: list[str]
    cat_terms: list[dict[Any, int]]  # per categorical feature: category -> term id
    cat_pairs: list[dict[Any, tuple[str, float]]]  # category -> (term name, coefficient)
    other_terms: npt.NDArray[np.intp]
    num_terms: npt.NDArray[np.intp]
    bin_terms: npt.NDArray[np.intp]
    term_coef: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]
    k: npt.NDArray[np.float64]
    bin_coef: npt.NDArray[np.float64]
    feature_schema_hash: str

    def __init__(self, pipeline: Pipeline, spec: FeatureSpec = LEAD_SPEC) -> None:
        ohe, scaler, clf = _parts(pipeline, spec)
        n_num, n_bin = len(spec.numeric), len(spec.binary)
        coef = np.asarray(clf.coef_, dtype=np.float64).ravel()
        n_cats = sum(len(c) for c in ohe.categories_)
        if coef.shape != (n_cats + n_num + n_bin,):
            raise ModelLoadError("the model's coefficients do not match its encoder")
        categories = [[str(c) for c in cats] for cats in ohe.categories_]
        tail = coef[n_cats:]
        self._setup(
            spec=spec,
            intercept=float(clf.intercept_[0]),
            categories=categories,
            cat_coef=coef[:n_cats].tolist(),
            mean=np.asarray(scaler.mean_, dtype=np.float64),
            k=tail[:n_num] / np.asarray(scaler.scale_, dtype=np.float64),
            bin_coef=tail[n_num:].copy(),
        )

    def _setup(
        self,
        *,
        spec: FeatureSpec,
        intercept: float,
        categories: list[list[str]],
        cat_coef: list[float],
        mean: npt.NDArray[np.float64],
        k: npt.NDArray[np.float64],
        bin_coef: npt.NDArray[np.float64],
    ) -> None:
        """Derive every lookup from the numbers (both constructors end here)."""
        self.spec = spec
        self.intercept = intercept
        self.feature_schema_hash = spec.schema_hash
        n_cat, n_num, n_bin = len(spec.categorical), len(spec.numeric), len(spec.binary)
        self._n = (n_cat, n_num, n_bin)
        names: list[str] = []
        self.cat_terms = []
        self.cat_pairs = []
        for feature, cats in zip(spec.categorical, categories, strict=True):
            terms: dict[Any, int] = {}
            for category in cats:
                terms[category] = len(names)
                names.append(f"{feature}={category}")
            self.cat_terms.append(terms)
            self.cat_pairs.append({c: (names[t], cat_coef[t]) for c, t in terms.items()})
        self.other_terms = np.arange(len(names), len(names) + n_cat)
        names += [f"{feature}=other" for feature in spec.categorical]
        self.num_terms = np.arange(len(names), len(names) + n_num)
        names += spec.numeric
        self.bin_terms = np.arange(len(names), len(names) + n_bin)
        names += spec.binary
        self.term_names = names
        self.term_coef = np.array(cat_coef + [0.0] * n_cat, dtype=np.float64)
        self.mean, self.k, self.bin_coef = mean, k, bin_coef
        self._num = tuple(zip(spec.numeric, self.mean.tolist(), self.k.tolist(), strict=True))
        self._bin = tuple(zip(spec.binary, self.bin_coef.tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Return every number the model scores with, as plain JSON-ready values.

        Floats stay Python floats, which :func:`json.dumps` writes with ``repr``: they read
        back bit for bit, so a model from :meth:`from_dict` scores exactly like this one.
        """
        return {
            "format": FORMAT,
            "feature_schema_hash": self.feature_schema_hash,
            "spec": self.spec.to_dict(),
            "features": {
                "categorical": list(self.spec.categorical),
                "numeric": list(self.spec.numeric),
                "binary": list(self.spec.binary),
            },
            "term_names": list(self.term_names),
            "cat_terms": [dict(terms) for terms in self.cat_terms],
            "term_coef": self.term_coef.tolist(),
            "intercept": self.intercept,
            "mean": self.mean.tolist(),
            "k": self.k.tolist(),
            "bin_coef": self.bin_coef.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompiledLinearModel:
        """Rebuild a model from :meth:`to_dict` output, checking every shape and type.

        A dict without a ``spec`` (written before specs existed) is read with the lead spec.

        Raises:
            ModelLoadError: ``d`` is malformed, inconsistent, has non-finite numbers or was
                made for another feature spec than this version computes.
        """
        if not isinstance(d, Mapping):
            raise ModelLoadError("the compiled model is malformed", context={"key": ""})
        spec = spec_from_dict(d["spec"]) if "spec" in d else LEAD_SPEC
        p = parse(d, spec)
        model = cls.__new__(cls)
        model._setup(
            spec=spec,
            intercept=p.intercept,
            categories=p.categories,
            cat_coef=p.cat_coef,
            mean=np.array(p.mean, dtype=np.float64),
            k=np.array(p.k, dtype=np.float64),
            bin_coef=np.array(p.bin_coef, dtype=np.float64),
        )
        return model

    def explain_row(self, row: Sequence[Any]) -> tuple[float, list[tuple[str, float]]]:
        """Return the log-odds of one feature row and every term's ``(name, contribution)``.

        Unseen categories appear as ``("", 0.0)``; the terms are in feature order.
        """
        n_cat, n_num, _ = self._n
        terms = [p.get(v, _NO_TERM) for p, v in zip(self.cat_pairs, row, strict=False)]
        for (name, mean, k), x in zip(self._num, row[n_cat : n_cat + n_num], strict=True):
            terms.append((name, (x - mean) * k))
        for (name, c), x in zip(self._bin, row[n_cat + n_num :], strict=True):
            terms.append((name, x * c))
        z = self.intercept
        for _, c in terms:
            z += c
        return z, terms

    def explain_columns(
        self, cols: FeatureColumns
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.intp]]:
        """Return, for a batch, the log-odds ``(n,)``, contributions ``(n, f)`` and term ids."""
        n_cat, n_num, n_bin = self._n
        width = n_cat + n_num + n_bin
        n = (
            cols.numeric.shape[1]
            if n_num
            else cols.binary.shape[1]
            if n_bin
            else len(cols.categorical[0])
        )
        terms = np.empty((n, width), dtype=np.intp)
        for f in range(n_cat):
            lookup, other = self.cat_terms[f], int(self.other_terms[f])
            terms[:, f] = list(map(lookup.get, cols.categorical[f], repeat(other, n)))
        terms[:, n_cat : n_cat + n_num] = self.num_terms
        terms[:, n_cat + n_num :] = self.bin_terms
        contrib = np.empty((n, width), dtype=np.float64)
        contrib[:, :n_cat] = self.term_coef[terms[:, :n_cat]]
        # a huge input may overflow to inf or nan; the caller rejects non-finite log-odds
        with np.errstate(over="ignore", invalid="ignore"):
            contrib[:, n_cat : n_cat + n_num] = (cols.numeric.T - self.mean) * self.k
            contrib[:, n_cat + n_num :] = cols.binary.T * self.bin_coef
            z = self.intercept + contrib.sum(axis=1)
        return z, contrib, terms


# the name of the class before feature specs existed
CompiledLeadModel = CompiledLinearModel
