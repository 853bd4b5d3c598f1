"""Counts have upper bounds: an absurd head count or page-view count is a bad record, not a lead
that scores 1.0 (found by the hardening review's fuzzing)."""

from __future__ import annotations

from mappings.engine import compile_mapping, load_spec
from scoring.synthetic import generate_lead_csv_rows


def test_absurd_counts_are_refused_sane_ones_pass() -> None:
    mapping = compile_mapping(load_spec("csv.lead"))
    [row] = list(generate_lead_csv_rows(1, seed=4, messy=False))
    ok = {**row, "employees": "250000", "page_views": "1200"}
    huge_staff = {**row, "employees": "9" * 30}
    huge_views = {**row, "page_views": "9" * 25}
    good, bad = mapping.apply_batch([ok, huge_staff, huge_views])
    assert [i for i, _ in good] == [0]
    assert {i: err.context.get("field") for i, err in bad} == {1: "employees", 2: "page_views"}
