"""The scikit-learn lead scorer (entry point ``sklearn_lead``), compiled for the hot path.

:meth:`SklearnLeadScorer.load` verifies the version folder and reads its compiled model
(:func:`scoring.registry.load_compiled`, :class:`~scoring.compiled.CompiledLeadModel`): a
scoring process never imports scikit-learn, scipy or skops (a version saved before
``compiled.json`` existed is compiled from its pipeline, which does).  Scores agree with
``Pipeline.predict_proba`` to 1e-9.

* :meth:`~SklearnLeadScorer.score_one`: pure Python, one record, ~10 µs including the
  :class:`~schemas.score.Score`.
* :meth:`~SklearnLeadScorer.score_columns`: numpy over the batch, ~2 µs per record at batch
  1,000 including the top factors.  A record that cannot be scored does not fail the batch:
  the result is a :class:`~scoring.base.PartialScoreColumns` whose ``failed`` maps its index
  to its :class:`~junction.core.errors.ScoringInputError`, with NaN / "" / [] in its place.
* :meth:`~SklearnLeadScorer.score`: a list of Scores; raises the first record's error.

Grades: ``value >= thresholds[0]`` is A, ``>= thresholds[1]`` B, ``>= thresholds[2]`` C,
else D.  Top factors are the ``top_k`` largest-magnitude signed contributions to the log-odds
(zero contributions left out), ties in feature order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from junction.core.errors import ConfigError, ScoringInputError
from schemas.score import Factor, Score
from scoring.base import PartialScoreColumns, factor_pairs, scores_from_columns, spread
from scoring.compiled import CompiledLinearModel
from scoring.grading import DEFAULT_THRESHOLDS, card_thresholds, check_thresholds
from scoring.lead_spec import LEAD_SPEC
from scoring.model_file import Calibrator, CompiledModel
from scoring.reasons import ReasonBook
from scoring.registry import load_bundle
from scoring.spec import FeatureSpec
from scoring.sufficiency import sufficient, sufficient_columns

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

_GRADES = ("A", "B", "C", "D")
_GRADE_NAMES = np.array(_GRADES, dtype=object)


def _by_magnitude(term: tuple[str, float]) -> float:
    return abs(term[1])


class SklearnLeadScorer:
    """Scores records with a compiled model (linear or trees) and its calibration.

    Args:
        pipeline: a fitted linear pipeline (compiled here, needs scikit-learn) or an already
            compiled model of any kind.
        calibration: maps the model's margin to a probability (default: the logistic).
        spec: the feature spec of a fitted ``pipeline`` (default: the lead spec); a compiled
            model carries its own.

    Attributes:
        name: the model name (from the model card).
        version: the model version.
        variant: ``production`` or ``challenger`` (A/B), copied into every score.
        thresholds: the grade thresholds (A, B, C).
        top_k: how many factors each score carries.
    """

    def __init__(
        self,
        pipeline: Pipeline | CompiledModel,
        *,
        name: str,
        version: str,
        thresholds: Sequence[float] = (0.75, 0.5, 0.25),
        top_k: int = 3,
        variant: str = "production",
        calibration: Calibrator | None = None,
        spec: FeatureSpec = LEAD_SPEC,
        numeric_effects: Mapping[str, float] | None = None,
    ) -> None:
        if top_k < 0:
            raise ConfigError("top_k must be >= 0")
        self.name = name
        self.version = version
        self.variant = variant
        self.thresholds = check_thresholds(thresholds)
        self.top_k = top_k
        self.calibration = calibration
        self.model: CompiledModel = (
            pipeline
            if hasattr(pipeline, "explain_columns")
            else CompiledLinearModel(pipeline, spec)
        )
        self.spec = self.model.spec
        self._extract = self.spec.extract
        self._term_names = np.array(self.model.term_names, dtype=object)
        if numeric_effects is None and isinstance(self.model, CompiledLinearModel):
            # a linear model's coefficient per unit is its effect, exactly
            numeric_effects = dict(zip(self.spec.numeric, self.model.k.tolist(), strict=True))
        self.reason_book = ReasonBook(effects=numeric_effects, binary=self.spec.binary)

    @classmethod
    def load(
        cls,
        version_dir: str | Path,
        *,
        thresholds: Sequence[float] | None = None,
        top_k: int = 3,
        variant: str = "production",
    ) -> SklearnLeadScorer:
        """Load and verify the compiled model in ``version_dir`` (no scikit-learn import).

        ``thresholds`` None takes the model card's ``grade_thresholds``
        (:func:`scoring.grading.card_thresholds`), else :data:`~scoring.grading.DEFAULT_THRESHOLDS`;
        given thresholds win over the card's.

        Raises:
            ModelLoadError: the model is missing, corrupt, untrusted or incompatible.
            ConfigError: the thresholds or ``top_k`` are invalid.
        """
        model, calibration, card = load_bundle(version_dir)
        return cls(
            model,
            name=card["name"],
            version=card["version"],
            thresholds=(
                thresholds
                if thresholds is not None
                else card_thresholds(card) or DEFAULT_THRESHOLDS
            ),
            top_k=top_k,
            variant=variant,
            calibration=calibration,
            numeric_effects=card.get("numeric_effects") or None,
        )

    def grade(self, value: float) -> str:
        """Return the grade of a probability under this scorer's thresholds."""
        a, b, c = self.thresholds
        return "A" if value >= a else "B" if value >= b else "C" if value >= c else "D"

    def score_one(self, record: Mapping[str, Any] | Any, key: str | None = None) -> Score:
        """Score one canonical lead (a dict or an object with the Lead fields).

        ``key`` (the record's stable key, for A/B assignment) is not needed by a single model.

        Raises:
            ScoringInputError: the record holds a value that cannot be a feature.
        """
        row = self._extract(record)
        z, terms = self.model.explain_row(row)
        if not math.isfinite(z):
            raise ScoringInputError("the record's numbers are too large to score")
        # a stable sort keeps feature order among equal magnitudes, as score_columns does
        top = sorted(terms, key=_by_magnitude, reverse=True)[: self.top_k]
        if self.calibration is not None:
            value = self.calibration.apply_one(z)
        elif z >= 0:
            value = 1.0 / (1.0 + math.exp(-z))
        else:
            value = math.exp(z) / (1.0 + math.exp(z))
        # validated construction: with pydantic-core it is cheaper than model_construct
        return Score(
            value=value,
            grade=self.grade(value),
            top_factors=[Factor(feature=n, contribution=c) for n, c in top if c],
            model=self.name,
            model_version=self.version,
            variant=self.variant,
            reasons=self.reason_book.reasons_for([(n, c) for n, c in top if c]),
            data_sufficient=sufficient(self.spec, row),
        )

    def score_columns(
        self,
        records: Sequence[Mapping[str, Any] | Any],
        keys: Sequence[str] | None = None,
    ) -> PartialScoreColumns:
        """Score a batch, column by column (see the module docstring for failed records).

        ``keys`` (the records' ids, for A/B assignment) are not needed by a single model.
        """
        n = len(records)
        cols, errors = self.spec.extract_columns(records)
        z, contrib, terms = self.model.explain_columns(cols)
        bad = ~np.isfinite(z)
        if bad.any():
            for pos in np.flatnonzero(bad).tolist():
                i = cols.rows[pos] if cols.rows is not None else pos
                errors[i] = ScoringInputError(
                    "the record's numbers are too large to score", context={"index": i}
                )
            z = np.where(bad, 0.0, z)
        if self.calibration is not None:
            values = self.calibration.apply(z)
        else:
            # 0.5 * (1 + tanh(z / 2)) is the logistic function without overflow for any z
            values = 0.5 * (1.0 + np.tanh(0.5 * z))
        a, b, c = self.thresholds
        grade_idx = (values < a).astype(np.intp) + (values < b) + (values < c)
        grades = _GRADE_NAMES[grade_idx].tolist()
        factors = self._top_factors(contrib, terms)
        value_list = values.tolist()
        enough = sufficient_columns(self.spec, cols)
        if errors or cols.rows is not None:
            rows = cols.rows
            value_list = spread(n, rows, errors, value_list, lambda: math.nan)
            grades = spread(n, rows, errors, grades, str)
            factors = spread(n, rows, errors, factors, list)
            enough = spread(n, rows, errors, enough, bool)
        return PartialScoreColumns(
            values=value_list,
            grades=grades,
            factors=factors,
            model=self.name,
            model_version=self.version,
            variant=self.variant,
            failed={i: errors[i] for i in sorted(errors)},
            data_sufficient=enough,
        )

    def _top_factors(self, contrib: np.ndarray, terms: np.ndarray) -> list[list[tuple[str, float]]]:
        k = min(self.top_k, contrib.shape[1])
        if k == 0 or contrib.shape[0] == 0:
            return [[] for _ in range(contrib.shape[0])]
        order = _top_k(np.abs(contrib), k)
        top_vals = np.take_along_axis(contrib, order, axis=1)
        names = self._term_names[np.take_along_axis(terms, order, axis=1)].tolist()
        return factor_pairs(names, top_vals.tolist())

    def score(self, records: Sequence[Mapping[str, Any] | Any]) -> list[Score]:
        """Score a batch into Score objects, in order.

        Raises:
            ScoringInputError: the first record that cannot be scored (``context['index']``).
        """
        return scores_from_columns(self.score_columns(records), self.reason_book.reasons_for)


def _top_k(magnitude: np.ndarray, k: int) -> np.ndarray:
    """Column indexes of each row's ``k`` largest values, largest first, ties in column order.

    The same as ``np.argsort(-magnitude, axis=1, kind="stable")[:, :k]`` for the non-negative
    magnitudes of finite contributions (rows with NaN are failed records, their factors
    dropped), in ``k`` passes of ``argmax`` (the first maximum of a row) instead of a sort.
    """
    if k * 3 > magnitude.shape[1]:
        return np.argsort(-magnitude, axis=1, kind="stable")[:, :k]
    work = magnitude.copy()
    rows = np.arange(work.shape[0])
    order = np.empty((work.shape[0], k), dtype=np.intp)
    for r in range(k):
        best = work.argmax(axis=1)
        order[:, r] = best
        work[rows, best] = -1.0  # below every magnitude: taken
    return order
