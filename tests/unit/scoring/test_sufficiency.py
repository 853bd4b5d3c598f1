"""The data-sufficiency flag: which inputs count, the share, one row equals the batch."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest

from junction.core.errors import ConfigError, ScoringInputError
from scoring.lead_spec import LEAD_SPEC
from scoring.spec import FeatureColumns, FeatureSpec, per_record_columns
from scoring.sufficiency import (
    LEAD_INPUTS,
    inputs,
    needed,
    present_columns,
    present_count,
    sufficient,
    sufficient_columns,
)
from scoring.synthetic import generate_leads

FULL = {
    "lead_source": "Referral",
    "industry": "Software",
    "country": "DE",
    "title": "CTO",
    "employees": 250,
    "annual_revenue": 3_000_000,
    "page_views": 12,
    "visits": 3,
    "email_opens": 2,
    "phone": "+4930231250",
    "email": "anna@acme.example.com",
}


def present(record: dict[str, Any]) -> int:
    return present_count(LEAD_SPEC, LEAD_SPEC.extract(record))


def test_the_lead_inputs_and_the_default_share() -> None:
    assert inputs(LEAD_SPEC) == LEAD_INPUTS
    assert len(LEAD_INPUTS) == 8
    assert needed(LEAD_SPEC) == 4
    assert needed(LEAD_SPEC, 0.0) == 0
    assert needed(LEAD_SPEC, 1.0) == 8
    assert needed(LEAD_SPEC, 0.3) == 3  # ceil(2.4)


def test_a_full_lead_is_sufficient_and_an_empty_one_is_not() -> None:
    assert present(FULL) == 8
    assert sufficient(LEAD_SPEC, LEAD_SPEC.extract(FULL))
    assert present({}) == 0
    assert not sufficient(LEAD_SPEC, LEAD_SPEC.extract({}))
    # an email alone is not an input: 0 means "business address" and "no address" alike
    assert present({"email": "anna@gmail.com"}) == 0


@pytest.mark.parametrize(
    ("record", "count"),
    [
        ({"lead_source": "Referral"}, 1),
        ({"industry": "Retail"}, 1),
        ({"country": "FR"}, 1),
        ({"title": "Analyst"}, 1),
        ({"title": "   "}, 0),  # a blank title gives seniority "missing"
        ({"employees": 0}, 1),  # known to be zero is known
        ({"annual_revenue": 10}, 1),
        ({"page_views": 1}, 1),
        ({"visits": 2}, 1),
        ({"email_opens": 5}, 1),
        ({"page_views": 3, "visits": 2, "email_opens": 1}, 1),  # engagement is one input
        ({"page_views": 0, "visits": 0, "email_opens": 0}, 0),
        ({"phone": "+4930231250"}, 1),
        ({"phone": ""}, 0),
    ],
)
def test_what_counts_as_present(record: dict[str, Any], count: int) -> None:
    assert present(record) == count


def test_the_threshold_is_inclusive() -> None:
    four = {"lead_source": "Referral", "industry": "Software", "country": "DE", "title": "CEO"}
    three = {k: four[k] for k in ("lead_source", "industry", "country")}
    assert sufficient(LEAD_SPEC, LEAD_SPEC.extract(four))
    assert not sufficient(LEAD_SPEC, LEAD_SPEC.extract(three))
    assert sufficient(LEAD_SPEC, LEAD_SPEC.extract(three), min_share=0.375)
    assert not sufficient(LEAD_SPEC, LEAD_SPEC.extract(FULL | {"phone": None}), min_share=1.0)
    assert sufficient(LEAD_SPEC, LEAD_SPEC.extract({}), min_share=0.0)


@pytest.mark.parametrize("share", [-0.1, 1.5, math.nan])
def test_a_share_outside_zero_to_one_is_a_config_error(share: float) -> None:
    with pytest.raises(ConfigError):
        sufficient(LEAD_SPEC, LEAD_SPEC.extract(FULL), min_share=share)
    cols, _ = LEAD_SPEC.extract_columns([FULL])
    with pytest.raises(ConfigError):
        sufficient_columns(LEAD_SPEC, cols, min_share=share)


def sparse_leads() -> list[dict[str, Any]]:
    """Synthetic leads with fields knocked out so that every count from 0 to 8 occurs."""
    leads = generate_leads(600, seed=11)
    fields = [
        "lead_source", "industry", "country", "title", "employees", "annual_revenue",
        "phone", "page_views", "visits", "email_opens",
    ]  # fmt: skip
    rng = random.Random(5)
    for i, lead in enumerate(leads):
        lead.pop("converted")
        knock_out = (i % 10) / 9  # from none to every field
        for field in fields:
            if rng.random() < knock_out:
                lead[field] = None
    return leads


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_the_batch_equals_row_by_row(share: float) -> None:
    leads = sparse_leads()
    cols, errors = LEAD_SPEC.extract_columns(leads)
    assert errors == {}
    rows = [LEAD_SPEC.extract(r) for r in leads]
    counts = [present_count(LEAD_SPEC, row) for row in rows]
    assert set(counts) == set(range(9))
    assert present_columns(LEAD_SPEC, cols).tolist() == counts
    assert sufficient_columns(LEAD_SPEC, cols, min_share=share) == [
        sufficient(LEAD_SPEC, row, min_share=share) for row in rows
    ]


def test_an_empty_batch() -> None:
    cols, _ = LEAD_SPEC.extract_columns([])
    assert sufficient_columns(LEAD_SPEC, cols) == []


class TinySpec:
    """A declared spec of the shape scoring.tabular builds: a flag per fillable numeric."""

    spec_id = "tabular.v1"
    categorical = ("job", "education")
    numeric = ("age", "log_balance", "campaign")
    binary = ("balance_missing", "housing")
    schema_hash = "test"

    def extract(self, record: Any) -> tuple[Any, ...]:
        def cat(name: str) -> str:
            value = record.get(name)
            return "missing" if value in (None, "") else str(value)

        age = record.get("age")
        balance = record.get("balance")
        if balance is not None and balance < 0:
            raise ScoringInputError("balance must be >= 0", field="balance")
        return (
            cat("job"),
            cat("education"),
            math.nan if age is None else float(age),
            0.0 if balance is None else math.log1p(balance),
            float(record.get("campaign") or 0),
            1.0 if balance is None else 0.0,
            1.0 if record.get("housing") else 0.0,
        )

    def extract_columns(
        self, records: Sequence[Any]
    ) -> tuple[FeatureColumns, dict[int, ScoringInputError]]:
        return per_record_columns(self, records)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec_id}


def test_any_spec_counts_categoricals_and_numerics_with_their_flags() -> None:
    spec = TinySpec()
    assert isinstance(spec, FeatureSpec)
    assert inputs(spec) == ("job", "education", "age", "log_balance", "campaign")
    assert needed(spec) == 3
    records = [
        {"job": "admin", "education": "tertiary", "age": 41, "balance": 0, "campaign": 1},
        {"job": "admin", "age": 41},  # campaign is always present (no flag, never NaN)
        {"job": "", "balance": 10},
        {},
        {"housing": True},  # binary features are not inputs
    ]
    rows = [spec.extract(r) for r in records]
    assert [present_count(spec, row) for row in rows] == [5, 3, 2, 1, 1]
    cols, errors = spec.extract_columns(records)
    assert errors == {}
    assert present_columns(spec, cols).tolist() == [5, 3, 2, 1, 1]
    assert sufficient_columns(spec, cols) == [True, True, False, False, False]
    assert [sufficient(spec, row) for row in rows] == [True, True, False, False, False]


def test_columns_of_a_batch_with_failed_records_cover_the_scorable_ones() -> None:
    spec = TinySpec()
    records = [{"job": "admin", "age": 30}, {"balance": -1}, {}]
    cols, errors = spec.extract_columns(records)
    assert list(errors) == [1]
    assert cols.rows == [0, 2]
    assert sufficient_columns(spec, cols, min_share=0.4) == [True, False]
