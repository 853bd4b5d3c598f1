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

import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import numpy as np
import yaml

from junction.core.errors import ConfigError
from schemas.score import Factor, Reason, Score
from scoring.base import PartialScoreColumns, factor_pairs, scores_from_columns
from scoring.features import COUNTRY, INDUSTRY, LEAD_SOURCE, SENIORITY_LEVELS
from scoring.lead_spec import LEAD_SPEC
from scoring.reasons import ReasonBook
from scoring.sufficiency import needed, present_columns, present_count

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

BUILTIN_RULES = Path(__file__).with_name("lead_rules.yaml")
FORMAT = "junction.rules.v1"
_GRADES = np.array(("A", "B", "C", "D"), dtype=object)
_RULE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TOP_KEYS = frozenset(
    {"format", "description", "base", "scale", "top_k", "min_share", "rules", "reasons"}
)
_RULE_KEYS = frozenset({"id", "feature", "op", "value", "points", "description"})

# feature -> position in the feature row; categoricals 0-3, numerics 4-8, binaries 9-12
_CATEGORICAL: dict[str, int] = {"lead_source": 0, "industry": 1, "country": 2, "seniority": 3}
_CAT_NORMALIZERS: dict[str, Callable[[str], Any]] = {
    "lead_source": LEAD_SOURCE.__getitem__,
    "industry": INDUSTRY.__getitem__,
    "country": COUNTRY.__getitem__,
    "seniority": INDUSTRY.__getitem__,  # the same slug; checked against SENIORITY_LEVELS
}
# numeric feature -> (numeric index, the value is log1p'd from the raw figure, its missing flag)
_NUMERIC: dict[str, tuple[int, bool, int | None]] = {
    "employees": (0, True, 2),
    "log_employees": (0, False, 2),
    "annual_revenue": (1, True, 3),
    "log_annual_revenue": (1, False, 3),
    "page_views": (2, False, None),
    "visits": (3, False, None),
    "email_opens": (4, False, None),
}
_BINARY: dict[str, int] = {
    "has_phone": 0,
    "free_email": 1,
    "employees_missing": 2,
    "annual_revenue_missing": 3,
}
_CAT_OPS = frozenset({"==", "!=", "in", "not_in"})
_COMPARE: dict[str, Callable[[Any, float], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_NUM_OPS = frozenset(_COMPARE)
_N_CAT, _N_NUM = 4, 5
_MAX_POINTS = 1e6  # keeps every sum of points finite

Kind = Literal["cat", "num", "bin"]


def _fail(message: str, *, rule: str | None = None, field: str | None = None) -> NoReturn:
    context: dict[str, Any] = {}
    where = ""
    if rule is not None:
        context["rule"] = rule
        where = f"rule {rule!r}"
    if field is not None:
        context["field"] = field
        where = f"{where}, field {field!r}" if where else f"field {field!r}"
    raise ConfigError(
        f"rules file: {where}: {message}" if where else f"rules file: {message}", context=context
    )


def _finite(value: Any, *, rule: str | None, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail("must be a number", rule=rule, field=field)
    x = float(value)
    if not math.isfinite(x):
        _fail("must be a finite number", rule=rule, field=field)
    return x


def _number_text(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True, slots=True)
class Rule:
    """One checked rule, ready to evaluate.

    Attributes:
        id: the rule's id in the file.
        kind: ``cat``, ``num`` or ``bin``.
        index: the feature's position within its kind's columns.
        points: what the rule adds when it fires.
        group: the index of the rule's term among the rule set's terms.
        values: categorical: the normalized categories; ``negate`` for ``!=`` / ``not_in``.
        op, threshold, flag: numeric: the comparison, its threshold on the feature's scale
            (log1p'd for a raw firmographic) and the binary index of the missing flag.
        want: binary: 1.0 or 0.0.
    """

    id: str
    kind: Kind
    index: int
    points: float
    group: int
    values: frozenset[str] = frozenset()
    negate: bool = False
    op: str = ""
    threshold: float = 0.0
    flag: int | None = None
    want: float = 1.0

    def fires(self, row: Sequence[Any]) -> bool:
        """Whether the rule fires on one feature row."""
        if self.kind == "cat":
            return (row[self.index] in self.values) != self.negate
        if self.kind == "bin":
            return bool(row[_N_CAT + _N_NUM + self.index] == self.want)
        if self.flag is not None and row[_N_CAT + _N_NUM + self.flag]:
            return False
        return bool(_COMPARE[self.op](row[_N_CAT + self.index], self.threshold))

    def mask(self, cats: Sequence[list[str]], num: np.ndarray, binary: np.ndarray) -> np.ndarray:
        """Whether the rule fires, for each column of a batch."""
        if self.kind == "cat":
            col = cats[self.index]
            hit = np.fromiter(map(self.values.__contains__, col), dtype=bool, count=len(col))
            return ~hit if self.negate else hit
        if self.kind == "bin":
            out: np.ndarray = binary[self.index] == self.want
            return out
        fired: np.ndarray = _COMPARE[self.op](num[self.index], self.threshold)
        if self.flag is not None:
            fired &= binary[self.flag] == 0.0
        return fired


@dataclass(frozen=True, slots=True)
class Term:
    """A factor's name: fixed (``employees>=200``) or the record's category (``industry=...``)."""

    name: str
    cat_index: int | None = None  # categorical: the name is f"{name}={the record's category}"


@dataclass(frozen=True)
class RuleSet:
    """A checked rules file (:func:`parse_rules`)."""

    rules: tuple[Rule, ...]
    terms: tuple[Term, ...]
    base: float
    scale: Literal["linear", "logistic"]
    scale_max: float
    midpoint: float
    width: float
    top_k: int
    min_share: float
    reasons: Mapping[str, str]
    digest: str
    description: str

    def to_value(self, points: float) -> float:
        """Points as a value in [0, 1] (see the module docstring)."""
        if self.scale == "linear":
            return min(1.0, max(0.0, points / self.scale_max))
        z = (points - self.midpoint) / self.width
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _scale(raw: Any) -> tuple[Literal["linear", "logistic"], float, float, float]:
    if raw is None:
        return "linear", 100.0, 0.0, 1.0
    if not isinstance(raw, Mapping):
        _fail("must be a mapping such as {kind: linear, max: 100}", field="scale")
    kind = raw.get("kind", "linear")
    if kind == "linear":
        extra = set(raw) - {"kind", "max"}
        if extra:
            _fail("unknown key for a linear scale", field=f"scale.{sorted(map(str, extra))[0]}")
        mx = _finite(raw.get("max", 100), rule=None, field="scale.max")
        if mx <= 0:
            _fail("must be above 0", field="scale.max")
        return "linear", mx, 0.0, 1.0
    if kind == "logistic":
        extra = set(raw) - {"kind", "midpoint", "width"}
        if extra:
            _fail("unknown key for a logistic scale", field=f"scale.{sorted(map(str, extra))[0]}")
        mid = _finite(raw.get("midpoint", 50), rule=None, field="scale.midpoint")
        width = _finite(raw.get("width", 15), rule=None, field="scale.width")
        if width <= 0:
            _fail("must be above 0", field="scale.width")
        return "logistic", 100.0, mid, width
    _fail("must be linear or logistic", field="scale.kind")


def _category_values(rid: str, feature: str, op: str, raw: Any) -> frozenset[str]:
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            _fail(f"must be a non-empty list of categories for {op}", rule=rid, field="value")
        items = raw
    else:
        items = [raw]
    norm = _CAT_NORMALIZERS[feature]
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str) or not item.strip():
            _fail("categories must be non-empty text", rule=rid, field="value")
        value = str(norm(item))
        if feature == "seniority" and value not in SENIORITY_LEVELS:
            _fail(
                f"seniority must be one of {', '.join(SENIORITY_LEVELS)}", rule=rid, field="value"
            )
        out.add(value)
    return frozenset(out)


def _rule(
    raw: Any, position: int, terms: dict[tuple[Any, ...], int], seen: set[str]
) -> tuple[Rule, Term]:
    if not isinstance(raw, Mapping):
        _fail("must be a mapping with id, feature, op, value and points", rule=f"#{position}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _RULE_ID.fullmatch(rid):
        _fail(
            "must be lower-case letters, digits and _ (starting with a letter)",
            rule=f"#{position}",
            field="id",
        )
    if rid in seen:
        _fail("is used by an earlier rule", rule=rid, field="id")
    seen.add(rid)
    extra = set(raw) - _RULE_KEYS
    if extra:
        _fail("is not a rule key", rule=rid, field=sorted(map(str, extra))[0])
    for required in ("feature", "op", "value", "points"):
        if required not in raw:
            _fail("is required", rule=rid, field=required)
    feature, op, value = raw["feature"], raw["op"], raw["value"]
    points = _finite(raw["points"], rule=rid, field="points")
    if abs(points) > _MAX_POINTS:
        _fail("must be between -1,000,000 and 1,000,000", rule=rid, field="points")
    if not isinstance(op, str):
        _fail("must be text", rule=rid, field="op")
    if not isinstance(feature, str):
        _fail("must be text", rule=rid, field="feature")
    spec: dict[str, Any]
    if feature in _CATEGORICAL:
        if op not in _CAT_OPS:
            ops = ", ".join(sorted(_CAT_OPS))
            _fail(f"must be one of {ops} for {feature}", rule=rid, field="op")
        key: tuple[Any, ...] = ("cat", feature)
        term = Term(feature, _CATEGORICAL[feature])
        spec = {
            "kind": "cat",
            "index": _CATEGORICAL[feature],
            "values": _category_values(rid, feature, op, value),
            "negate": op in ("!=", "not_in"),
        }
    elif feature in _NUMERIC:
        if op not in _NUM_OPS:
            ops = ", ".join(sorted(_NUM_OPS))
            _fail(f"must be one of {ops} for {feature}", rule=rid, field="op")
        index, raw_scale, flag = _NUMERIC[feature]
        threshold = _finite(value, rule=rid, field="value")
        if raw_scale and threshold < 0:
            _fail(f"must be >= 0 for {feature}", rule=rid, field="value")
        key = ("num", feature, op, threshold)
        term = Term(f"{feature}{op}{_number_text(threshold)}")
        spec = {
            "kind": "num",
            "index": index,
            "op": op,
            "threshold": math.log1p(threshold) if raw_scale else threshold,
            "flag": flag,
        }
    elif feature in _BINARY:
        if op != "is":
            _fail(f"must be 'is' for {feature}", rule=rid, field="op")
        if not isinstance(value, bool):
            _fail("must be true or false", rule=rid, field="value")
        key = ("bin", feature, value)
        term = Term(feature if value else f"{feature}=0")
        spec = {"kind": "bin", "index": _BINARY[feature], "want": 1.0 if value else 0.0}
    else:
        known = ", ".join([*_CATEGORICAL, *_NUMERIC, *_BINARY])
        _fail(f"must be a lead feature: {known}", rule=rid, field="feature")
    group = terms.setdefault(key, len(terms))
    return Rule(id=rid, points=points, group=group, **spec), term


def parse_rules(text: str | bytes, *, source: str = "rules") -> RuleSet:
    """Check a rules file's text and compile it.

    Raises:
        ConfigError: the YAML is malformed or a key is wrong; the message names the rule (by
            id, or ``#n`` for the n-th) and the field.
    """
    blob = text.encode() if isinstance(text, str) else text
    try:
        data = yaml.safe_load(blob)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        context = {"source": source}
        if mark is not None:
            context["line"] = mark.line + 1
        raise ConfigError("rules file: not valid YAML", context=context) from None
    if not isinstance(data, Mapping):
        _fail("must be a mapping with a rules list")
    extra = set(data) - _TOP_KEYS
    if extra:
        _fail("is not a rules file key", field=sorted(map(str, extra))[0])
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        _fail(f"must be {FORMAT}", field="format")
    base = _finite(data.get("base", 0), rule=None, field="base")
    if abs(base) > _MAX_POINTS:
        _fail("must be between -1,000,000 and 1,000,000", field="base")
    scale, mx, mid, width = _scale(data.get("scale"))
    top_k = data.get("top_k", 3)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= 50:
        _fail("must be a whole number from 0 to 50", field="top_k")
    min_share = _finite(data.get("min_share", 0.5), rule=None, field="min_share")
    if not 0.0 <= min_share <= 1.0:
        _fail("must be between 0 and 1", field="min_share")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        _fail("must be a non-empty list", field="rules")
    description = data.get("description", "")
    if not isinstance(description, str):
        _fail("must be text", field="description")
    reasons = data.get("reasons") or {}
    try:
        overrides = ReasonBook(reasons).overrides
    except ConfigError as exc:
        code = exc.context.get("code")
        _fail(exc.user_message, field=f"reasons.{code}" if code else "reasons")
    terms: dict[tuple[Any, ...], int] = {}
    term_list: list[Term] = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_rules, start=1):
        rule, term = _rule(raw, position, terms, seen)
        if rule.group == len(term_list):
            term_list.append(term)
        rules.append(rule)
    return RuleSet(
        rules=tuple(rules),
        terms=tuple(term_list),
        base=base,
        scale=scale,
        scale_max=mx,
        midpoint=mid,
        width=width,
        top_k=top_k,
        min_share=min_share,
        reasons=overrides,
        digest=hashlib.sha256(blob).hexdigest()[:12],
        description=description,
    )


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, float, float]:
    t = tuple(float(x) for x in thresholds)
    if len(t) != 3 or not 1.0 >= t[0] > t[1] > t[2] >= 0.0:
        raise ConfigError("grade thresholds must be three numbers, 1 >= A > B > C >= 0")
    return t[0], t[1], t[2]


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
        self.thresholds = _check_thresholds(thresholds)
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
            values, grades, factors, sufficient, reasons = _scatter(
                n, cols.rows, values, grades, factors, sufficient, reasons
            )
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


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and check a rules file (default: the built-in lead rules).

    Raises:
        ConfigError: the file cannot be read or is malformed.
    """
    target = BUILTIN_RULES if path is None else Path(path)
    try:
        blob = target.read_bytes()
    except OSError as exc:
        raise ConfigError(
            "the rules file cannot be read",
            context={"path": str(target), "reason": type(exc).__name__},
        ) from None
    return parse_rules(blob, source=target.name)


def _scatter(
    n: int,
    rows: list[int] | None,
    values: list[float],
    grades: list[str],
    factors: list[list[tuple[str, float]]],
    sufficient: list[bool],
    reasons: list[str],
) -> tuple[list[float], list[str], list[list[tuple[str, float]]], list[bool], list[str]]:
    """Spread the scored positions over the whole batch; failed records get NaN, "", [], ..."""
    out_v: list[float] = [math.nan] * n
    out_g: list[str] = [""] * n
    out_f: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    out_s: list[bool] = [False] * n
    out_r: list[str] = ["[]"] * n
    for pos, i in enumerate(rows if rows is not None else range(n)):
        out_v[i], out_g[i], out_f[i] = values[pos], grades[pos], factors[pos]
        out_s[i], out_r[i] = sufficient[pos], reasons[pos]
    return out_v, out_g, out_f, out_s, out_r
