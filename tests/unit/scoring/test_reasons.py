"""Reason codes: every lead term worded for a salesperson, generic wording, no personal data."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from junction.core.errors import ConfigError
from schemas.score import Factor, Reason
from scoring.features import BINARY, NUMERIC, SENIORITY_LEVELS
from scoring.reasons import (
    DEFAULT_BOOK,
    ReasonBook,
    load_overrides,
    reason_for,
    reasons_for,
    reasons_json,
)

CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")

# every term a compiled lead model can report (scoring.compiled names them this way), plus the
# categories of the synthetic data and the terms the rules scorer adds
LEAD_TERMS: list[str] = [
    *(f"seniority={level}" for level in (*SENIORITY_LEVELS, "other")),
    *(
        f"lead_source={s}"
        for s in (
            "web_form", "paid_search", "event", "referral", "webinar", "partner",
            "cold_call", "purchased_list", "missing", "other", "trade_show",
        )
    ),
    *(
        f"industry={s}"
        for s in ("software", "financial_services", "retail", "government", "missing", "other")
    ),
    *(f"country={c}" for c in ("US", "DE", "GB", "missing", "other")),
    *NUMERIC,
    *BINARY,
    *(f"{flag}=0" for flag in BINARY),
    "employees>=200", "employees<10", "annual_revenue>=1000000", "page_views>=10",
    "visits>3", "email_opens<=1", "page_views<1",
]  # fmt: skip


@pytest.mark.parametrize("term", LEAD_TERMS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_every_lead_term_has_a_code_and_plain_words(term: str, sign: float) -> None:
    reason = reason_for(term, 0.7 * sign)
    assert reason is not None
    assert CODE.match(reason.code), reason.code
    assert reason.direction == ("positive" if sign > 0 else "negative")
    # plain words: no raw term syntax, no snake_case, starts with a capital
    assert reason.text[:1].isupper(), reason.text
    assert "_" not in reason.text, reason.text
    assert "=" not in reason.text, reason.text
    assert len(reason.text) <= 80


@pytest.mark.parametrize(
    ("term", "contribution", "code", "text"),
    [
        ("seniority=c_level", 1.1, "SENIORITY_C_LEVEL", "Senior decision maker (C-level)"),
        ("seniority=vp", 0.9, "SENIORITY_VP", "Senior decision maker (VP)"),
        ("seniority=missing", -0.3, "SENIORITY_MISSING", "Job title unknown"),
        ("industry=software", 0.6, "INDUSTRY_SOFTWARE", "Industry: Software"),
        ("industry=financial_services", 0.4, "INDUSTRY_FINANCIAL_SERVICES",
         "Industry: Financial services"),
        ("industry=other", -0.2, "INDUSTRY_OTHER", "Less common industry"),
        ("lead_source=referral", 1.6, "LEAD_SOURCE_REFERRAL", "Referred by someone we know"),
        ("lead_source=trade_show", 0.1, "LEAD_SOURCE_TRADE_SHOW", "Lead source: Trade show"),
        ("country=DE", 0.05, "COUNTRY_DE", "Country: DE"),
        ("page_views", 0.8, "PAGE_VIEWS_HIGH", "Visited many pages on the website"),
        ("page_views", -0.8, "PAGE_VIEWS_LOW", "Viewed few pages on the website"),
        ("log_employees", -0.4, "EMPLOYEES_LOW", "Small company"),
        ("log_annual_revenue", 0.4, "ANNUAL_REVENUE_HIGH", "High company revenue"),
        ("free_email", -1.2, "FREE_EMAIL", "Uses a free email address"),
        ("has_phone", 0.7, "HAS_PHONE", "Gave a phone number"),
        ("has_phone=0", -5.0, "NO_PHONE", "No phone number given"),
        ("employees_missing", -0.3, "EMPLOYEES_UNKNOWN", "Company size unknown"),
        ("employees>=200", 10.0, "EMPLOYEES_HIGH", "Large company (employees: 200 or more)"),
        ("page_views<1", -5.0, "PAGE_VIEWS_LOW", "Viewed few pages on the website "
         "(page views: fewer than 1)"),
        ("annual_revenue>=1000000", 5.0, "ANNUAL_REVENUE_HIGH",
         "High company revenue (annual revenue: 1,000,000 or more)"),
    ],
)  # fmt: skip
def test_lead_wording(term: str, contribution: float, code: str, text: str) -> None:
    assert reason_for(term, contribution) == Reason(
        code=code, text=text, direction="positive" if contribution > 0 else "negative"
    )


def test_a_threshold_term_is_worded_by_its_operator_not_by_the_sign() -> None:
    # a rule "employees >= 5000: -5" (too big for us) is a large company that lowered the score
    reason = reason_for("employees>=5000", -5.0)
    assert reason is not None
    assert (reason.code, reason.direction) == ("EMPLOYEES_HIGH", "negative")
    assert reason.text.startswith("Large company")


def test_effects_say_which_way_a_numeric_pushes() -> None:
    # a model where more page views lower the odds: a positive contribution means few views
    book = ReasonBook(effects={"page_views": -0.2, "age": -0.03, "balance": 0.1})
    assert book.reason("page_views", 0.5) == Reason(
        code="PAGE_VIEWS_LOW", text="Viewed few pages on the website", direction="positive"
    )
    assert book.reason("age", 0.5) == Reason(
        code="AGE_LOW", text="age is lower than usual", direction="positive"
    )
    assert book.reason("balance", 0.5) == Reason(
        code="BALANCE_HIGH", text="balance is higher than usual", direction="positive"
    )


@pytest.mark.parametrize(
    ("term", "contribution", "code", "text"),
    [
        ("job=blue-collar", -0.3, "JOB_BLUE_COLLAR", "job = blue-collar lowers the score"),
        ("job=blue_collar", -0.3, "JOB_BLUE_COLLAR", "job = blue collar lowers the score"),
        ("poutcome=success", 1.2, "POUTCOME_SUCCESS", "poutcome = success raises the score"),
        ("marital_status=single", 0.1, "MARITAL_STATUS_SINGLE",
         "marital status = single raises the score"),
        ("age", 0.2, "AGE_RAISES", "age raises the score"),
        ("emp.var.rate", -0.9, "EMP_VAR_RATE_LOWERS", "emp.var.rate lowers the score"),
        ("pdays<30", 0.5, "PDAYS_LOW", "pdays is fewer than 30"),
        ("campaign>=4", -0.5, "CAMPAIGN_HIGH", "campaign is 4 or more"),
    ],
)  # fmt: skip
def test_generic_wording_for_other_specs(
    term: str, contribution: float, code: str, text: str
) -> None:
    assert reason_for(term, contribution) == Reason(
        code=code, text=text, direction="positive" if contribution > 0 else "negative"
    )


def test_declared_binary_features_read_as_yes_and_no() -> None:
    book = ReasonBook(binary=["housing_loan"])
    assert book.reason("housing_loan", -0.4) == Reason(
        code="HOUSING_LOAN_YES", text="housing loan: yes lowers the score", direction="negative"
    )
    assert book.reason("housing_loan=0", 0.4) == Reason(
        code="HOUSING_LOAN_NO", text="housing loan: no raises the score", direction="positive"
    )


def test_a_declared_missing_flag_reads_as_unknown() -> None:
    book = ReasonBook(binary=["pdays_missing", "housing_loan"])
    assert book.reason("pdays_missing", 0.4) == Reason(
        code="PDAYS_UNKNOWN", text="pdays unknown raises the score", direction="positive"
    )
    assert book.reason("pdays_missing=0", -0.4) == Reason(
        code="PDAYS_KNOWN", text="pdays known lowers the score", direction="negative"
    )


PERSONAL = [
    ("email=jane.doe@example.com", "jane.doe@example.com"),
    ("jane.doe@example.com", "jane.doe@example.com"),
    ("industry=jane.doe@example.com", "jane.doe@example.com"),
    ("lead_source=ceo@example.org", "ceo@example.org"),
    ("phone=+1 415 555 0123", "555"),
    ("country=+4930123456", "4930123456"),
    ("website=https://jane.example.com/x", "jane.example.com"),
    ("homepage=www.janedoe.example", "janedoe"),
    ("notes=" + "Jane Doe called about the renewal of her contract", "Jane Doe"),
    ("Jane Doe <jane@example.com>", "jane@example.com"),
    ("name=Jane Doe", "Jane"),
    ("last_name=doe", "doe"),
    ("contact.first_name=jane", "jane"),
    ("title=chief_of_jane", "jane"),
    ("company_name=doe_family_bakery", "doe"),
    ("jane@example.com>=3", "jane@example.com"),
]


@pytest.mark.parametrize(("term", "secret"), PERSONAL)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_no_personal_data_is_echoed(term: str, secret: str, sign: float) -> None:
    reason = reason_for(term, sign)
    assert reason is not None
    blob = reason.model_dump_json() + reasons_json([(term, sign)])
    assert secret.lower() not in blob.lower()
    assert "@" not in blob
    assert CODE.match(reason.code)


def test_zero_and_non_finite_contributions_give_no_reason() -> None:
    assert reason_for("free_email", 0.0) is None
    assert reason_for("free_email", math.nan) is None
    assert reason_for("free_email", math.inf) is None
    assert reasons_for([("free_email", 0.0), ("has_phone", 1.0), ("visits", math.nan)]) == [
        Reason(code="HAS_PHONE", text="Gave a phone number", direction="positive")
    ]


def test_factors_pairs_and_json_agree() -> None:
    factors = [("seniority=c_level", 1.1), ("free_email", -1.2), ("page_views", 0.3)]
    as_models = [Factor(feature=f, contribution=c) for f, c in factors]
    reasons = reasons_for(factors)
    assert reasons_for(as_models) == reasons
    assert [r.code for r in reasons] == ["SENIORITY_C_LEVEL", "FREE_EMAIL", "PAGE_VIEWS_HIGH"]
    assert orjson.loads(reasons_json(factors)) == [r.model_dump() for r in reasons]
    assert reasons_json(as_models) == reasons_json(factors)
    assert reasons_json([]) == "[]"
    rows = [
        factors,
        [],
        [("has_phone=0", -5.0), ("x", 0.0)],
        factors[:1],
        [("free_email", math.nan), ("free_email", math.inf), ("free_email", -math.inf)],
    ]
    assert DEFAULT_BOOK.json_columns(rows) == [reasons_json(r) for r in rows]
    assert DEFAULT_BOOK.json_columns(rows)[-1] == "[]"


def test_reasons_are_cached_per_term_and_sign() -> None:
    book = ReasonBook()
    first = book.reason("visits", 0.1)
    assert book.reason("visits", 2.5) is first
    other = book.reason("visits", -0.1)
    assert other is not first
    assert other is not None
    assert other.code == "VISITS_LOW"


def test_operator_overrides_replace_the_text_only() -> None:
    book = ReasonBook({"FREE_EMAIL": "Private email address", "PAGE_VIEWS_HIGH": "Very active"})
    assert book.reason("free_email", -1.0) == Reason(
        code="FREE_EMAIL", text="Private email address", direction="negative"
    )
    assert book.reason("page_views", 1.0) == Reason(
        code="PAGE_VIEWS_HIGH", text="Very active", direction="positive"
    )
    assert book.reasons_json([("page_views>=10", 10.0)]) == (
        '[{"code":"PAGE_VIEWS_HIGH","text":"Very active","direction":"positive"}]'
    )
    # the built-in book is not affected
    assert reason_for("free_email", -1.0) == Reason(
        code="FREE_EMAIL", text="Uses a free email address", direction="negative"
    )


def test_overrides_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "reasons.yaml"
    path.write_text("FREE_EMAIL: Private email address\nNO_PHONE: 'No number to call'\n")
    assert load_overrides(path) == {
        "FREE_EMAIL": "Private email address",
        "NO_PHONE": "No number to call",
    }
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_overrides(empty) == {}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"free_email": "x"}, "free_email"),
        ({"FREE EMAIL": "x"}, "FREE EMAIL"),
        ({"FREE_EMAIL": ""}, "FREE_EMAIL"),
        ({"FREE_EMAIL": "two\nlines"}, "FREE_EMAIL"),
        ({"FREE_EMAIL": 3}, "FREE_EMAIL"),
        ({"FREE_EMAIL": "x" * 201}, "FREE_EMAIL"),
    ],
)
def test_malformed_overrides_are_refused(overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReasonBook(overrides)
    assert info.value.context["code"] == code


def test_an_override_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reasons.yaml"
    path.write_text("- FREE_EMAIL\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_overrides(path)
    path.write_text("FREE_EMAIL: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_overrides(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_overrides(tmp_path / "absent.yaml")
