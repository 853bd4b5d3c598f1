"""The rules file of the rules scorer (``format: junction.rules.v1``): parsed and checked.

The format is documented in :mod:`scoring.rules`; a malformed file raises
:class:`~junction.core.errors.ConfigError` naming the rule and the field.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import yaml

from junction.core.errors import ConfigError
from scoring.features import COUNTRY, INDUSTRY, LEAD_SOURCE, SENIORITY_LEVELS
from scoring.reasons import ReasonBook

BUILTIN_RULES = Path(__file__).with_name("lead_rules.yaml")
FORMAT = "junction.rules.v1"
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
