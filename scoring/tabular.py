"""Declared feature specs (``tabular.v1``): features of any record type, written in YAML.

The built-in lead spec is code (:mod:`scoring.features`); a tabular spec is data, so a model can
be trained on a CSV export or on any canonical entity without writing Python.  Example (the UCI
Bank Marketing columns; ``duration`` is left out because it is only known after the call)::

    spec: tabular.v1
    name: bank-marketing
    features:
      - {name: age, kind: numeric}
      - {name: job, kind: categorical}
      - {name: campaign, kind: numeric, transform: log1p}
      - {name: pdays, kind: numeric, missing_values: ["999"], missing_flag: true}
      - {name: housing_loan, kind: binary, source: housing}
    label: {field: y, positive: ["yes"]}
    exclude: [duration]

Per feature:

* ``categorical``: ``transform`` ``slug`` (default: lower-case, runs of other characters to
  ``_``), ``upper`` or ``strip``; ``None``, ``""`` and ``missing_values`` become ``missing``.
* ``numeric``: ``number`` (default) or ``log1p``; numbers may arrive as text (``"1,5"`` with a
  decimal comma is read as 1.5); ``None``, ``""`` and ``missing_values`` are missing and become
  ``fill`` (default 0), and ``missing_flag: true`` adds the binary feature ``<name>_missing``;
  ``min``/``max`` bound the accepted values.
* ``binary``: ``truthy`` (default: ``true_values`` are 1, ``false_values`` and missing are 0,
  anything else is an error) or ``present`` (any non-empty value is 1).

A value that cannot be its feature raises :class:`~junction.core.errors.ScoringInputError`
naming the field, never a silent default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from junction.core.errors import ConfigError, ScoringInputError
from scoring.spec import FeatureColumns, per_record_columns

MISSING = "missing"
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_CACHE_LIMIT = 65_536
_TRUE = ("1", "true", "yes", "y", "t")
_FALSE = ("0", "false", "no", "n", "f")
_FAST_PATH_MISSES = (ScoringInputError, TypeError, ValueError, AttributeError, OverflowError)


class TabularFeature(BaseModel):
    """One declared feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=_NAME, description="Feature name (lower-case identifier).")
    kind: Literal["categorical", "numeric", "binary"]
    source: str | None = Field(None, min_length=1, description="Record field; default: name.")
    transform: str | None = Field(None, description="See the module docstring per kind.")
    missing_values: tuple[str, ...] = Field((), description="Raw values that mean 'missing'.")
    missing_flag: bool = Field(False, description="numeric: add a binary <name>_missing.")
    fill: float = Field(0.0, description="numeric: the value of a missing number.")
    min: float | None = None
    max: float | None = None
    true_values: tuple[str, ...] = _TRUE
    false_values: tuple[str, ...] = _FALSE

    @model_validator(mode="after")
    def _check(self) -> TabularFeature:
        allowed = {
            "categorical": ("slug", "upper", "strip"),
            "numeric": ("number", "log1p"),
            "binary": ("truthy", "present"),
        }[self.kind]
        if self.transform is not None and self.transform not in allowed:
            raise ValueError(f"transform of a {self.kind} feature must be one of {allowed}")
        if self.missing_flag and self.kind != "numeric":
            raise ValueError("missing_flag applies to numeric features only")
        if not math.isfinite(self.fill):
            raise ValueError("fill must be finite")
        return self

    @property
    def field(self) -> str:
        """The record field this feature reads."""
        return self.source or self.name


class LabelSpec(BaseModel):
    """Which field holds the outcome, and which values count as positive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(..., min_length=1)
    positive: tuple[str, ...] = Field(..., min_length=1)
    negative: tuple[str, ...] | None = Field(
        None, description="Values that count as negative; default: anything not positive."
    )


class TabularSpec(BaseModel):
    """A declared feature spec (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: Literal["tabular.v1"] = "tabular.v1"
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    features: tuple[TabularFeature, ...] = Field(..., min_length=1)
    label: LabelSpec | None = None
    time_field: str | None = Field(None, description="Timestamp field for the time split.")
    exclude: tuple[str, ...] = Field(
        (), description="Fields that must never be features (e.g. ones that leak the outcome)."
    )

    @model_validator(mode="after")
    def _check(self) -> TabularSpec:
        names = [f.name for f in self.features] + [
            f"{f.name}_missing" for f in self.features if f.missing_flag
        ]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique (incl. the <name>_missing flags)")
        leaking = sorted({f.field for f in self.features} & set(self.exclude))
        if leaking:
            raise ValueError(f"excluded fields used as features: {leaking}")
        if self.label is not None and self.label.field in {f.field for f in self.features}:
            raise ValueError("the label field cannot be a feature")
        return self

    # the FeatureSpec interface ---------------------------------------------------------------

    @property
    def spec_id(self) -> str:
        """``tabular.v1``."""
        return self.spec

    @property
    def categorical(self) -> tuple[str, ...]:
        """Categorical feature names, in declaration order."""
        return tuple(f.name for f in self.features if f.kind == "categorical")

    @property
    def numeric(self) -> tuple[str, ...]:
        """Numeric feature names, in declaration order."""
        return tuple(f.name for f in self.features if f.kind == "numeric")

    @property
    def binary(self) -> tuple[str, ...]:
        """Binary features, then one ``<name>_missing`` flag per flagged numeric."""
        flags = tuple(f"{f.name}_missing" for f in self.features if f.missing_flag)
        return tuple(f.name for f in self.features if f.kind == "binary") + flags

    @property
    def schema_hash(self) -> str:
        """sha256 over the canonical JSON of the spec without its label and time field."""
        return _extractor(self).schema_hash

    def extract(self, record: Any) -> tuple[Any, ...]:
        """The feature row of one record (a mapping or an object with the fields)."""
        return _extractor(self).row(record)

    def extract_columns(
        self, records: Sequence[Any]
    ) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
        """Features of a batch; records that cannot be scored are named in the errors."""
        ex = _extractor(self)
        if len(records) and len({type(r) for r in records}) == 1:
            try:
                return ex.columns(records), {}
            except _FAST_PATH_MISSES:
                pass  # some record is not clean: the per-record path says which
        return per_record_columns(self, records)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data."""
        return self.model_dump(mode="json", exclude_defaults=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TabularSpec:
        """Validate a spec dict (e.g. from a model's files)."""
        return cls.model_validate(dict(d))

    def label_of(self, record: Mapping[str, Any]) -> int | None:
        """1, 0, or None when the record's label is absent or matches neither list."""
        if self.label is None:
            raise ConfigError("the feature spec declares no label", context={"spec": self.name})
        raw = record.get(self.label.field)
        if raw is None:
            return None
        value = str(raw).strip()
        if value in self.label.positive:
            return 1
        if self.label.negative is None:
            return 0 if value else None
        return 0 if value in self.label.negative else None


def load_tabular_spec(path: str | Path) -> TabularSpec:
    """Read a tabular spec from a YAML or JSON file.

    Raises:
        ConfigError: the file is unreadable or not a valid spec (the field is named).
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            "the feature spec file cannot be read", context={"reason": type(exc).__name__}
        ) from None
    try:
        return TabularSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            "the feature spec is invalid",
            context={
                "loc": ".".join(map(str, first.get("loc", ()))),
                "problem": first.get("msg", ""),
            },
        ) from None


# extraction ----------------------------------------------------------------------------------


class _Memo(dict[Any, Any]):
    """``memo[raw]`` is the normalized value, computed once per distinct raw value."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, raw: Any) -> Any:
        value = self.fn(raw)
        if len(self) < _CACHE_LIMIT:
            self[raw] = value
        return value


def _categorical(f: TabularFeature) -> Callable[[Any], str]:
    missing = set(f.missing_values)
    how = f.transform or "slug"

    def norm(raw: Any) -> str:
        if raw is None:
            return MISSING
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ScoringInputError(
                f"{f.field} must be text", field=f.field, context={"type": type(raw).__name__}
            )
        text = str(raw).strip()
        if not text or text in missing:
            return MISSING
        if how == "upper":
            return text.upper()
        if how == "strip":
            return text
        return _NON_ALNUM.sub("_", text.lower()).strip("_") or MISSING

    return norm


def _parse_number(raw: Any, field: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ScoringInputError(f"{field} is not a number", field=field, context={"type": "bool"})
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        raise ScoringInputError(
            f"{field} is not a number", field=field, context={"type": type(raw).__name__}
        )
    text = raw.strip().replace("\u00a0", "").replace(" ", "")
    if not text:
        return None
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        raise ScoringInputError(f"{field} is not a number", field=field) from None


def _numeric(f: TabularFeature) -> Callable[[Any], tuple[float, float]]:
    """Returns (value, 1.0 if missing else 0.0)."""
    missing_text = set(f.missing_values)
    missing_num = set()
    for m in f.missing_values:
        with contextlib.suppress(ValueError):
            missing_num.add(float(m))
    log = f.transform == "log1p"

    def norm(raw: Any) -> tuple[float, float]:
        if isinstance(raw, str) and raw.strip() in missing_text:
            return f.fill, 1.0
        x = _parse_number(raw, f.field)
        if x is None or x != x or x in missing_num:  # NaN is missing too
            return f.fill, 1.0
        if math.isinf(x):
            raise ScoringInputError(f"{f.field} must be finite", field=f.field)
        if (f.min is not None and x < f.min) or (f.max is not None and x > f.max):
            raise ScoringInputError(f"{f.field} is out of range", field=f.field)
        if log:
            if x < 0.0:
                raise ScoringInputError(f"{f.field} must be >= 0 for log1p", field=f.field)
            x = math.log1p(x)
        return x, 0.0

    return norm


def _binary(f: TabularFeature) -> Callable[[Any], float]:
    trues = {v.lower() for v in f.true_values}
    falses = {v.lower() for v in f.false_values}
    missing = set(f.missing_values)
    present = f.transform == "present"

    def norm(raw: Any) -> float:
        if raw is None:
            return 0.0
        if present:
            return 0.0 if (isinstance(raw, str) and not raw.strip()) else 1.0
        if isinstance(raw, bool):
            return 1.0 if raw else 0.0
        text = str(raw).strip()
        if not text or text in missing:
            return 0.0
        low = text.lower()
        if low in trues:
            return 1.0
        if low in falses:
            return 0.0
        raise ScoringInputError(f"{f.field} is not a yes/no value", field=f.field)

    return norm


class _Extractor:
    """The compiled form of one spec: per-feature normalizers, memoized."""

    def __init__(self, spec: TabularSpec) -> None:
        body = spec.model_dump(mode="json", exclude={"label", "time_field"})
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        self.schema_hash = hashlib.sha256(blob).hexdigest()
        feats = spec.features
        self.cat = [(f.field, _Memo(_categorical(f))) for f in feats if f.kind == "categorical"]
        self.num = [
            (f.field, _Memo(_numeric(f)), f.missing_flag) for f in feats if f.kind == "numeric"
        ]
        self.bin = [(f.field, _Memo(_binary(f))) for f in feats if f.kind == "binary"]
        self.fields = tuple(
            dict.fromkeys(
                [f for f, _ in self.cat] + [f for f, _, _ in self.num] + [f for f, _ in self.bin]
            )
        )

    @staticmethod
    def _get(record: Any) -> Callable[[str], Any]:
        if isinstance(record, Mapping):
            return record.get
        return lambda name: getattr(record, name, None)

    def row(self, record: Any) -> tuple[Any, ...]:
        g = self._get(record)
        try:
            cats = [memo[g(field)] for field, memo in self.cat]
            nums: list[float] = []
            flags: list[float] = []
            for field, memo, flagged in self.num:
                x, miss = memo[g(field)]
                nums.append(x)
                if flagged:
                    flags.append(miss)
            bins = [memo[g(field)] for field, memo in self.bin]
        except TypeError:
            raise ScoringInputError("a field holds an unhashable value") from None
        return (*cats, *nums, *bins, *flags)

    def columns(self, records: Sequence[Any]) -> FeatureColumns:
        first = records[0]
        if isinstance(first, Mapping):
            raw = {f: [r.get(f) for r in records] for f in self.fields}
        else:
            raw = {f: [getattr(r, f, None) for r in records] for f in self.fields}
        n = len(records)
        cats = tuple(list(map(memo.__getitem__, raw[field])) for field, memo in self.cat)
        num = np.empty((len(self.num), n), dtype=np.float64)
        flag_rows: list[list[float]] = []
        for j, (field, memo, flagged) in enumerate(self.num):
            pairs = list(map(memo.__getitem__, raw[field]))
            num[j] = [p[0] for p in pairs]
            if flagged:
                flag_rows.append([p[1] for p in pairs])
        bin_rows = [list(map(memo.__getitem__, raw[field])) for field, memo in self.bin]
        binary = np.array(bin_rows + flag_rows, dtype=np.float64).reshape(-1, n)
        return FeatureColumns(cats, num, binary, None)


_EXTRACTORS: dict[int, tuple[TabularSpec, _Extractor]] = {}


def _extractor(spec: TabularSpec) -> _Extractor:
    # frozen pydantic models are hashable by value; keyed by id with the spec kept alive
    hit = _EXTRACTORS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    ex = _Extractor(spec)
    if len(_EXTRACTORS) > 256:
        _EXTRACTORS.clear()
    _EXTRACTORS[id(spec)] = (spec, ex)
    return ex
