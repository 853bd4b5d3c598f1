"""Mappings tested as data: each spec's ``<entity>.cases.yaml`` pairs raw input with the result.

```yaml
cases:
  - name: clean US row
    input: {lead_id: L-1, email: " Jane.Doe@Example.COM ", country: USA}
    expect: {external_id: L-1, email: jane.doe@example.com, country: US}
  - name: bad email
    input: {lead_id: L-2, email: "jane@"}
    error: {code: mapping_error, field: email}
```

``expect`` lists the fields that matter, compared with the model's JSON form (datetimes as
``2026-03-01T00:00:00Z``, decimals as strings); ``null`` asserts a field is missing.
``error`` gives the RecordError ``code`` and ``field``.  ``junction mappings test`` runs these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from junction.core.errors import ConfigError, RecordError
from mappings.engine import builtin_spec_ids, compile_mapping, load_spec, spec_path

__all__ = ["CaseResult", "builtin_spec_ids", "cases_path", "run_builtin_cases", "run_cases"]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case.

    Attributes:
        spec_id: The spec the case belongs to.
        case: The case's name (``<cases file>`` when the file itself is broken).
        passed: Whether the mapping did what the case expects.
        message: Why it failed (empty when it passed).
    """

    spec_id: str
    case: str
    passed: bool
    message: str = ""


class _ExpectedError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    field: str | None = None


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1)
    input: dict[str, Any]
    expect: dict[str, Any] | None = None
    error: _ExpectedError | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> _Case:
        if (self.expect is None) == (self.error is None):
            raise ValueError("a case gives exactly one of 'expect' or 'error'")
        return self


class _CasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: list[_Case] = Field(..., min_length=1)


def cases_path(spec_file: Path) -> Path:
    """Return the cases file next to a spec: ``lead.yaml`` -> ``lead.cases.yaml``."""
    return spec_file.with_name(f"{spec_file.stem}.cases.yaml")


def count_cases(spec_file: Path) -> int:
    """How many cases the spec's cases file holds (0 when it has none).

    Raises:
        ConfigError: the cases file is not valid YAML or not a cases file.
    """
    path = cases_path(spec_file)
    return len(_load_cases(path)) if path.is_file() else 0


def run_cases(spec_path_or_id: str | Path) -> list[CaseResult]:
    """Run the cases of one spec (built-in id or path); problems become failed results."""
    label = str(spec_path_or_id)
    try:
        path = spec_path(spec_path_or_id)
        spec = load_spec(path)
        label = spec.id
        mapping = compile_mapping(spec)
        cases = _load_cases(cases_path(path))
    except ConfigError as exc:
        return [CaseResult(label, "<cases file>", False, exc.user_message)]
    return [_run_case(mapping, case) for case in cases]


def run_builtin_cases() -> list[CaseResult]:
    """Run the cases of every built-in spec."""
    return [result for spec_id in builtin_spec_ids() for result in run_cases(spec_id)]


def _load_cases(path: Path) -> list[_Case]:
    if not path.is_file():
        raise ConfigError(f"no cases file {path.name} next to the spec")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return _CasesFile.model_validate(data).cases
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: YAML syntax: {exc}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path.name}: {where}: {err['msg']}") from None


def _run_case(mapping: Any, case: _Case) -> CaseResult:
    spec_id = mapping.spec_id
    try:
        model = mapping.apply(case.input)
    except RecordError as exc:
        if case.error is None:
            return CaseResult(
                spec_id, case.name, False, f"unexpected {exc.code}: {exc.user_message}"
            )
        if exc.code != case.error.code or (case.error.field not in (None, exc.field)):
            want = f"{case.error.code} on {case.error.field}"
            return CaseResult(
                spec_id, case.name, False, f"wanted {want}, got {exc.code}: {exc.user_message}"
            )
        return CaseResult(spec_id, case.name, True)
    if case.error is not None:
        want = f"{case.error.code} on {case.error.field}"
        return CaseResult(spec_id, case.name, False, f"wanted {want}, the record mapped")
    actual = model.model_dump(mode="json")
    diffs = []
    for name, want in (case.expect or {}).items():
        if name not in actual:
            diffs.append(f"{name}: not a field of {mapping.entity}")
            continue
        expected = to_jsonable_python(want)
        if actual[name] != expected:
            diffs.append(f"{name}: expected {expected!r}, got {actual[name]!r}")
    return CaseResult(spec_id, case.name, not diffs, "; ".join(diffs))
