"""Built-in specs are tested as data: every case in every ``*.cases.yaml`` passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mappings.cases import CaseResult, builtin_spec_ids, run_builtin_cases, run_cases
from mappings.engine import SPECS_DIR, load_spec

SPEC = """\
id: mine.lead
entity: lead
fields:
  external_id: {from: id, required: true}
  country: {from: c, transforms: [country]}
"""


def test_builtin_spec_ids():
    assert {"csv.lead", "csv.contact", "xml.lead"} <= set(builtin_spec_ids())


@pytest.mark.parametrize("spec_id", builtin_spec_ids())
def test_builtin_spec_loads_and_has_its_cases(spec_id):
    spec = load_spec(spec_id)
    assert spec.id == spec_id
    source, entity = spec_id.split(".", 1)
    assert (SPECS_DIR / source / f"{entity}.cases.yaml").is_file()


def test_all_builtin_cases_pass():
    results = run_builtin_cases()
    failed = [r for r in results if not r.passed]
    assert not failed, "\n".join(f"{r.spec_id} / {r.case}: {r.message}" for r in failed)
    per_spec = {r.spec_id for r in results}
    assert per_spec == set(builtin_spec_ids())
    assert sum(r.spec_id == "csv.lead" for r in results) >= 12


def test_csv_lead_cases_cover_each_kind_of_error():
    cases = {r.case for r in run_cases("csv.lead")}
    assert len(cases) >= 12
    text = (SPECS_DIR / "csv" / "lead.cases.yaml").read_text(encoding="utf-8")
    for field in (
        "external_id",
        "email",
        "phone",
        "country",
        "annual_revenue",
        "employees",
        "created_at",
        "page_views",
    ):
        assert f"field: {field}}}" in text


def test_failing_cases_are_reported_not_raised(tmp_path: Path):
    (tmp_path / "mine.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "mine.cases.yaml").write_text(
        """\
cases:
  - name: passes
    input: {id: "1", c: Germany}
    expect: {external_id: "1", country: DE}
  - name: wrong expectation
    input: {id: "2", c: Germany}
    expect: {country: FR}
  - name: expected an error that does not happen
    input: {id: "3"}
    error: {code: mapping_error, field: country}
  - name: wrong error field
    input: {c: Germany}
    error: {code: mapping_error, field: country}
  - name: unexpected error
    input: {id: "5", c: Atlantis}
    expect: {country: null}
  - name: unknown field in expect
    input: {id: "6"}
    expect: {colour: red}
""",
        encoding="utf-8",
    )
    results = run_cases(tmp_path / "mine.yaml")
    assert [(r.case, r.passed) for r in results] == [
        ("passes", True),
        ("wrong expectation", False),
        ("expected an error that does not happen", False),
        ("wrong error field", False),
        ("unexpected error", False),
        ("unknown field in expect", False),
    ]
    assert all(isinstance(r, CaseResult) and r.spec_id == "mine.lead" for r in results)
    assert "expected 'FR', got 'DE'" in results[1].message
    assert "the record mapped" in results[2].message
    assert "got mapping_error" in results[3].message
    assert "unexpected mapping_error" in results[4].message
    assert "not a field of lead" in results[5].message


@pytest.mark.parametrize(
    ("cases_text", "fragment"),
    [
        (None, "no cases file"),
        ("cases: []\n", "cases"),
        ("cases:\n  - {name: x, input: {}}\n", "exactly one of 'expect' or 'error'"),
        ("cases: [\n", "YAML syntax"),
    ],
    ids=["missing", "empty", "no-outcome", "bad-yaml"],
)
def test_broken_cases_files_are_one_failed_result(tmp_path: Path, cases_text, fragment):
    (tmp_path / "mine.yaml").write_text(SPEC, encoding="utf-8")
    if cases_text is not None:
        (tmp_path / "mine.cases.yaml").write_text(cases_text, encoding="utf-8")
    [result] = run_cases(tmp_path / "mine.yaml")
    assert not result.passed
    assert result.case == "<cases file>"
    assert fragment in result.message


def test_unknown_spec_is_a_failed_result():
    [result] = run_cases("csv.nothing")
    assert not result.passed
    assert "unknown mapping spec" in result.message
