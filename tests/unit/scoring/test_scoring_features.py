"""The lead feature spec: one row, a batch, missing and invalid values, the schema hash."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from junction.core.errors import ScoringInputError
from schemas import Lead
from scoring import features
from scoring.batch_features import columns_from_rows, extract_columns, to_matrix
from scoring.features import FEATURE_NAMES, FEATURE_SCHEMA_HASH, extract
from scoring.synthetic import generate_leads

FULL = {
    "lead_source": "Web Form",
    "industry": "financial-services",
    "country": " de ",
    "title": "VP of Sales",
    "employees": 99,
    "annual_revenue": Decimal("1250000.00"),
    "page_views": 12,
    "visits": 3,
    "email_opens": 4,
    "phone": "+493023125120",
    "email": "Anna.Muller@GMAIL.com",
}


def test_extract_full_record():
    row = extract(FULL)
    assert len(row) == len(FEATURE_NAMES) == 13
    assert row[:4] == ("web_form", "financial_services", "DE", "vp")
    assert row[4] == pytest.approx(math.log(100))
    assert row[5] == pytest.approx(math.log1p(1_250_000))
    assert row[6:9] == (12.0, 3.0, 4.0)
    assert row[9:] == (1.0, 1.0, 0.0, 0.0)  # has_phone, free_email, no missing flags


def test_missing_values_become_missing_category_zero_and_flags():
    row = extract({})
    assert row[:4] == ("missing",) * 4
    assert row[4:9] == (0.0,) * 5
    assert row[9:] == (0.0, 0.0, 1.0, 1.0)
    assert extract({"title": "  ", "country": "", "page_views": math.nan})[2:4] == ("missing",) * 2


def test_dict_and_pydantic_lead_give_the_same_row():
    lead = {k: v for k, v in generate_leads(1, seed=2)[0].items() if k != "converted"}
    assert extract(lead) == extract(Lead(**lead))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("employees", -1),
        ("page_views", "many"),
        ("visits", math.inf),
        ("annual_revenue", [1]),
        ("lead_source", 7),
        ("email", 12),
        ("industry", ["software"]),
    ],
)
def test_invalid_values_raise_scoring_input_error(field, value):
    with pytest.raises(ScoringInputError) as info:
        extract(FULL | {field: value})
    # the message names no value: it is shown to users and may reach logs
    assert repr(value) not in info.value.user_message


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("Chief Revenue Officer", "c_level"),
        ("Vice President, Finance", "vp"),
        ("Head of Data", "director"),
        ("Team Lead Support", "manager"),
        ("Thought Leader", "individual"),
        (None, "missing"),
    ],
)
def test_seniority_by_title_keywords(title, level):
    assert extract({"title": title})[3] == level


def test_schema_hash_is_stable_and_covers_the_rules(monkeypatch):
    assert len(FEATURE_SCHEMA_HASH) == 64
    assert features._schema_hash() == FEATURE_SCHEMA_HASH
    monkeypatch.setattr(features, "FREE_EMAIL_DOMAINS", features.FREE_EMAIL_DOMAINS | {"x.org"})
    assert features._schema_hash() != FEATURE_SCHEMA_HASH


def _rows_of(cols):
    return list(zip(*cols.categorical, *cols.numeric.tolist(), *cols.binary.tolist(), strict=True))


@pytest.mark.parametrize("as_model", [False, True], ids=["dicts", "pydantic"])
def test_batch_columns_equal_row_extraction(as_model):
    leads = [{k: v for k, v in x.items() if k != "converted"} for x in generate_leads(500, 3)]
    records = [Lead(**x) for x in leads] if as_model else leads
    cols, errors = extract_columns(records)
    assert errors == {}
    assert cols.rows is None
    expected = [extract(r) for r in records]
    got = _rows_of(cols)
    for a, b in zip(got, expected, strict=True):
        assert a[:4] == b[:4]
        np.testing.assert_allclose(a[4:], b[4:], rtol=1e-15, atol=0)


def test_batch_with_bad_records_names_them_and_keeps_the_rest():
    leads = [{k: v for k, v in x.items() if k != "converted"} for x in generate_leads(20, 4)]
    leads[3]["employees"] = -5
    leads[11]["visits"] = "lots"
    cols, errors = extract_columns(leads)
    assert sorted(errors) == [3, 11]
    assert all(isinstance(e, ScoringInputError) for e in errors.values())
    assert errors[3].field == "employees"
    assert errors[11].field == "visits"
    assert cols.rows == [i for i in range(20) if i not in (3, 11)]
    assert _rows_of(cols) == [extract(leads[i]) for i in cols.rows]


def test_mixed_record_types_take_the_per_record_path():
    lead = {k: v for k, v in generate_leads(1, 5)[0].items() if k != "converted"}
    cols, errors = extract_columns([lead, Lead(**lead)])
    assert errors == {}
    assert _rows_of(cols) == [extract(lead)] * 2


def test_empty_batch_and_matrix_layout():
    cols, errors = extract_columns([])
    assert errors == {}
    assert cols.numeric.shape == (5, 0)
    assert cols.binary.shape == (4, 0)
    rows = [extract(FULL), extract({})]
    matrix = to_matrix(rows)
    assert matrix.shape == (2, 13)
    assert matrix.dtype == object
    assert tuple(matrix[0]) == rows[0]
    assert _rows_of(columns_from_rows(rows)) == rows
