"""The rules-based lead scorer (entry point ``rules_lead``): points from YAML, no training data.

A fallback for day one, before any outcome exists to train on, and a baseline the ML scorer
must beat.  It scores the same thirteen lead features as the ML scorer (:mod:`scoring.features`)
and returns the same :class:`~schemas.score.Score`.

The rules file (``format: junction.rules.v1``; the built-in one is ``scoring/lead_rules.yaml``)::

    base: 20                          # points every lead starts with
    scale: {kind: linear, max: 100}   # or {kind: logistic, midpoint: 50, width: 15}
    top_k: 3                          # factors per score
    min_share: 0.5                    # data sufficiency (scoring.sufficiency)
    rules:
      - {id: c_level, feature: seniority, op: "==", value: c_level, points: 25}
      - {id: target_industry, feature: industry, op: in, value: [software, saas], points: 10}
      - {id: mid_market, feature: employees, op: ">=", value: 200, points: 10}
      - {id: free_email, feature: free_email, op: is, value: true, points: -15}
    reasons: {FREE_EMAIL: "Private email address"}   # optional wording overrides

Features and operators:

* categorical ``lead_source``, ``industry``, ``country``, ``seniority``: ``==``, ``!=``, ``in``,
  ``not_in``; values are normalized like the features (``"Web Form"`` is ``web_form``, countries
  upper-case, ``missing`` for an absent value; seniority one of c_level, vp, director, manager,
  individual, missing).
* numeric ``page_views``, ``visits``, ``email_opens``, ``employees``, ``annual_revenue`` (and
  ``log_employees``, ``log_annual_revenue``): ``>=``, ``>``, ``<=``, ``<`` against a number.  A
  rule on company size or revenue never fires when the figure is unknown (use the flags below).
* binary ``has_phone``, ``free_email``, ``employees_missing``, ``annual_revenue_missing``:
  ``is`` ``true`` or ``false``.

Scoring: ``points = base + sum(points of every rule that fires)``, summed in file order.
``value`` is ``clamp(points / max, 0, 1)`` (linear) or ``1 / (1 + exp(-(points - midpoint) /
width))`` (logistic).  Grades use the ML scorer's convention: ``value >= thresholds[0]`` is A,
``>= thresholds[1]`` B, ``>= thresholds[2]`` C, else D.

Top factors are the fired rules' points per term (the ML scorer's term names: ``seniority=
c_level`` with the record's own category, ``employees>=200``, ``free_email``, ``has_phone=0``;
rules on one term add up), largest magnitude first, ties in file order, zero sums left out.
Their reasons come from :mod:`scoring.reasons` (with the file's ``reasons`` overrides), and
``data_sufficient`` from :mod:`scoring.sufficiency`.  ``model`` is ``rules`` and
``model_version`` the first 12 hex digits of the rules file's sha256.

A malformed rules file raises :class:`~junction.core.errors.ConfigError` naming the rule and the
field; a record value that cannot be a feature is a
:class:`~junction.core.errors.ScoringInputError` in ``failed``, as with the ML scorer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from schemas.score import Factor, Reason, Score
from scoring.base import PartialScoreColumns, factor_pairs, scores_from_columns, spread
from scoring.grading import check_thresholds
from scoring.lead_spec import LEAD_SPEC
from scoring.reasons import ReasonBook
from scoring.rules_file import BUILTIN_RULES, Rule, RuleSet, Term, load_rules, parse_rules
from scoring.sufficiency import needed, present_columns, present_count

_GRADES = np.array(("A", "B", "C", "D"), dtype=object)

__all__ = [
    "BUILTIN_RULES",
    "Rule",
    "RuleSet",
    "RulesLeadScorer",
    "RulesScoreColumns",
    "RulesSettings",
    "Term",
    "load_rules",
    "parse_rules",
]


class RulesSettings(Protocol):
    """What :meth:`RulesLeadScorer.from_config` reads: a pipeline's ``ScoringConfig``."""

    @property
    def rules(self) -> str | None: ...

    @property
    def thresholds(self) -> Sequence[float]: ...


class RulesScoreColumns(PartialScoreColumns):
    """:class:`~scoring.base.PartialScoreColumns` plus the rules scorer's per-record extras.

    ``data_sufficient[i]`` is the i-th record's flag and ``reasons_json[i]`` its reasons as a
    JSON array (``False`` and ``"[]"`` for a failed record).
    """

    __slots__ = ("reasons_json",)

    def __init__(
        self,
        *,
        data_sufficient: list[bool],
        reasons_json: list[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(data_sufficient=data_sufficient, **kwargs)
        self.reasons_json = reasons_json


class RulesLeadScorer:
    """Scores canonical leads by points from a rules file (see the module docstring).

    Args:
        rules: a :class:`RuleSet`, or a path to a rules file (default: the built-in rules).
        thresholds: the grade thresholds (A, B, C).
        variant: ``production`` or ``challenger``, copied into every score.

    Raises:
        ConfigError: the rules file is missing or malformed, or the thresholds are invalid.
    """

    model_name = "rules"

    def __init__(
        self,
        rules: RuleSet | str | Path | None = None,
        *,
        thresholds: Sequence[float] = (0.75, 0.5, 0.25),
        variant: str = "production",
    ) -> None:
        self.rules = rules if isinstance(rules, RuleSet) else load_rules(rules)
        self.thresholds = check_thresholds(thresholds)
        self.variant = variant
        self.name = self.model_name
        self.version = self.rules.digest
        self.top_k = self.rules.top_k
        self.reason_book = ReasonBook(self.rules.reasons)
        self._needed = needed(LEAD_SPEC, self.rules.min_share)
        # per term group of a categorical feature: category -> "feature=category"
        self._cat_terms: dict[int, _TermNames] = {
            g: _TermNames(t.name) for g, t in enumerate(self.rules.terms) if t.cat_index is not None
        }

    @classmethod
    def from_config(
        cls, cfg: RulesSettings, *, base_dir: str | Path | None = None, variant: str = "production"
    ) -> RulesLeadScorer:
        """Build from a pipeline's scoring config: its ``rules`` file (a relative path is taken
        from ``base_dir`` when given) or the built-in rules, and its ``thresholds``.

        Raises:
            ConfigError: the rules file is missing or malformed, or the thresholds are invalid.
        """
        path: Path | None = None
        if cfg.rules is not None:
            path = Path(cfg.rules)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
        return cls(path, thresholds=cfg.thresholds, variant=variant)

    # ------------------------------------------------------------------------------ scoring

    def grade(self, value: float) -> str:
        """The grade of a value under this scorer's thresholds."""
        a, b, c = self.thresholds
        return "A" if value >= a else "B" if value >= b else "C" if value >= c else "D"

    def _term_name(self, group: int, row: Sequence[Any]) -> str:
        term = self.rules.terms[group]
        if term.cat_index is None:
            return term.name
        return self._cat_terms[group][row[term.cat_index]]

    def explain_row(self, row: Sequence[Any]) -> tuple[float, list[tuple[str, float]]]:
        """Points of one feature row and its top factors ``(term, points)``."""
        rs = self.rules
        points = rs.base
        groups = [0.0] * len(rs.terms)
        for rule in rs.rules:
            if rule.fires(row):
                points += rule.points
                groups[rule.group] += rule.points
        ranked = sorted(((g, c) for g, c in enumerate(groups) if c), key=_magnitude, reverse=True)[
            : self.top_k
        ]
        return points, [(self._term_name(g, row), c) for g, c in ranked]

    def score_one(self, record: Mapping[str, Any] | Any, key: str | None = None) -> Score:
        """Score one canonical lead (``key`` is accepted for the protocol and ignored).

        Raises:
            ScoringInputError: the record holds a value that cannot be a feature.
        """
        row = LEAD_SPEC.extract(record)
        points, top = self.explain_row(row)
        value = self.rules.to_value(points)
        return Score(
            value=value,
            grade=self.grade(value),
            top_factors=[Factor(feature=n, contribution=c) for n, c in top],
            model=self.name,
            model_version=self.version,
            variant=self.variant,
            reasons=self.reason_book.reasons_for(top),
            data_sufficient=present_count(LEAD_SPEC, row) >= self._needed,
        )

    def score_columns(
        self, records: Sequence[Mapping[str, Any] | Any], keys: Sequence[str] | None = None
    ) -> RulesScoreColumns:
        """Score a batch column by column; records that cannot be scored are in ``failed``."""
        n = len(records)
        cols, errors = LEAD_SPEC.extract_columns(records)
        m = cols.numeric.shape[1]
        rs = self.rules
        points = np.full(m, rs.base, dtype=np.float64)
        contrib = np.zeros((m, len(rs.terms)), dtype=np.float64)
        for rule in rs.rules:
            add = np.where(rule.mask(cols.categorical, cols.numeric, cols.binary), rule.points, 0.0)
            points += add
            contrib[:, rule.group] += add
        if rs.scale == "linear":
            values = np.clip(points / rs.scale_max, 0.0, 1.0).tolist()
        else:  # math.exp per value: the same floats as score_one
            values = list(map(rs.to_value, points.tolist()))
        a, b, c = self.thresholds
        v = np.asarray(values, dtype=np.float64)
        grades: list[str] = _GRADES[(v < a).astype(np.intp) + (v < b) + (v < c)].tolist()
        factors = self._top_factors(contrib, cols.categorical)
        sufficient: list[bool] = (present_columns(LEAD_SPEC, cols) >= self._needed).tolist()
        reasons = self.reason_book.json_columns(factors)
        if errors or cols.rows is not None:
            rows = cols.rows
            values = spread(n, rows, errors, values, lambda: math.nan)
            grades = spread(n, rows, errors, grades, str)
            factors = spread(n, rows, errors, factors, list)
            sufficient = spread(n, rows, errors, sufficient, bool)
            reasons = spread(n, rows, errors, reasons, lambda: "[]")
        return RulesScoreColumns(
            values=values,
            grades=grades,
            factors=factors,
            model=self.name,
            model_version=self.version,
            variant=self.variant,
            failed={i: errors[i] for i in sorted(errors)},
            data_sufficient=sufficient,
            reasons_json=reasons,
        )

    def _top_factors(
        self, contrib: np.ndarray, cats: Sequence[list[str]]
    ) -> list[list[tuple[str, float]]]:
        m, g = contrib.shape
        k = min(self.top_k, g)
        if k == 0 or m == 0:
            return [[] for _ in range(m)]
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(contrib, order, axis=1)
        names = np.empty((m, g), dtype=object)
        for gi, term in enumerate(self.rules.terms):
            if term.cat_index is None:
                names[:, gi] = term.name
            else:
                names[:, gi] = list(map(self._cat_terms[gi].__getitem__, cats[term.cat_index]))
        picked = np.take_along_axis(names, order, axis=1).tolist()
        return factor_pairs(picked, top.tolist())

    def score(self, records: Sequence[Mapping[str, Any] | Any]) -> list[Score]:
        """Score a batch into Score objects, in order.

        Raises:
            ScoringInputError: the first record that cannot be scored (``context['index']``).
        """
        return scores_from_columns(self.score_columns(records), self.reason_book.reasons_for)

    def reasons(self, factors: Sequence[tuple[str, float]]) -> list[Reason]:
        """The reasons of factors under this scorer's wording (with the file's overrides)."""
        return self.reason_book.reasons_for(factors)


class _TermNames(dict[str, str]):
    """A memo dict: ``names[category]`` is ``"feature=category"``, built once per category."""

    def __init__(self, feature: str) -> None:
        super().__init__()
        self.feature = feature

    def __missing__(self, category: str) -> str:
        name = f"{self.feature}={category}"
        if len(self) < 65_536:
            self[category] = name
        return name


def _magnitude(item: tuple[int, float]) -> float:
    return abs(item[1])
