"""The synthetic lead generator: determinism, the known model, and a realistic messy CSV."""

from __future__ import annotations

import csv
from datetime import UTC
from decimal import Decimal

import phonenumbers
import pycountry
import pytest
from email_validator import EmailNotValidError, validate_email

from schemas import Lead
from scoring import _synthetic_pools as pools
from scoring._synthetic_csv import BAD_EMAIL
from scoring.features import SENIORITY, SENIORITY_LEVELS
from scoring.synthetic import (
    CSV_HEADER,
    TRUE_LOGIT,
    generate_lead_csv_rows,
    generate_leads,
    write_lead_csv,
)

EXACT_HEADER = (
    "lead_id,first_name,last_name,email,phone,company,title,industry,country,city,lead_source,"
    "employees,annual_revenue,website,page_views,visits,email_opens,created_at"
)


def test_same_seed_same_leads_other_seed_other_leads():
    assert generate_leads(300, seed=5) == generate_leads(300, seed=5)
    assert generate_leads(300, seed=5) != generate_leads(300, seed=6)


def test_lead_i_does_not_depend_on_n():
    assert generate_leads(50, seed=9) == generate_leads(200, seed=9)[:50]


def test_leads_are_valid_canonical_leads_with_a_label():
    leads = generate_leads(500, seed=1)
    for lead in leads:
        assert lead.pop("converted") in (0, 1)
        model = Lead(**lead)  # the canonical model accepts every generated lead
        assert model.created_at is not None
        assert model.created_at.tzinfo is UTC
        if lead["annual_revenue"] is not None:
            assert isinstance(lead["annual_revenue"], Decimal)
    assert len({lead["email"] for lead in leads}) == len(leads)


def test_base_rate_and_label_follow_the_true_logit():
    leads = generate_leads(20_000, seed=11)
    rate = sum(lead["converted"] for lead in leads) / len(leads)
    assert 0.15 <= rate <= 0.30
    # leads the true model ranks high convert more often than those it ranks low
    ranked = sorted(leads, key=TRUE_LOGIT.logit)
    low, high = ranked[: len(ranked) // 5], ranked[-len(ranked) // 5 :]
    low_rate = sum(x["converted"] for x in low) / len(low)
    high_rate = sum(x["converted"] for x in high) / len(high)
    assert high_rate > 3 * low_rate


@pytest.mark.parametrize("level", sorted(pools.TITLES))
def test_every_pool_title_maps_to_its_seniority_level(level):
    assert level in SENIORITY_LEVELS
    for title in pools.TITLES[level]:
        assert SENIORITY[title or None] == level


def test_phone_pools_hold_valid_numbers_of_their_country():
    for code, (_, _, _, cities) in pools.COUNTRIES.items():
        for _, prefix, digits in cities:
            for e164, national, intl in pools.phone_pool(prefix, digits):
                parsed = phonenumbers.parse(e164)
                assert phonenumbers.is_valid_number(parsed), e164
                assert phonenumbers.region_code_for_number(parsed) == code
                assert phonenumbers.parse(national, code) == parsed
                assert phonenumbers.parse(intl) == parsed


def test_csv_rows_render_the_same_leads():
    leads = generate_leads(200, seed=3)
    rows = list(generate_lead_csv_rows(200, seed=3, messy=False))
    assert [r["lead_id"] for r in rows] == [lead["external_id"] for lead in leads]
    for row, lead in zip(rows, leads, strict=True):
        assert tuple(row) == CSV_HEADER
        assert row["email"] == lead["email"]
        assert row["phone"] == (lead["phone"] or "")
        assert row["employees"] == ("" if lead["employees"] is None else str(lead["employees"]))
        assert row["created_at"].endswith("Z")


def test_messy_csv_looks_like_a_real_export():
    rows = list(generate_lead_csv_rows(20_000, seed=21, messy=True))
    assert rows == list(generate_lead_csv_rows(20_000, seed=21, messy=True))
    countries = {r["country"] for r in rows}
    assert {"Germany", "DE", "United States", "US"} <= countries
    assert any(r["phone"].startswith("(") for r in rows)  # NANP national format
    assert any(r["phone"].startswith("+49 ") for r in rows)
    assert any(len(r["created_at"]) == 10 and r["created_at"][2] == "." for r in rows)
    assert "Web Form" in {r["lead_source"] for r in rows}
    assert "Financial Services" in {r["industry"] for r in rows}
    for name in countries - {""}:
        pycountry.countries.lookup(name)  # every country value resolves
    bad_email = [r for r in rows if r["email"] == BAD_EMAIL]
    bad_employees = [r for r in rows if r["employees"].startswith("-")]
    share = (len(bad_email) + len(bad_employees)) / len(rows)
    assert 0.002 <= share <= 0.01
    assert bad_email
    assert bad_employees
    for row in rows[:2000]:
        if row["email"] != BAD_EMAIL:
            validate_email(row["email"].strip(), check_deliverability=False)
    with pytest.raises(EmailNotValidError):
        validate_email(BAD_EMAIL, check_deliverability=False)


def test_write_lead_csv_writes_the_exact_header_and_rows(tmp_path):
    path = tmp_path / "leads.csv"
    assert write_lead_csv(path, 250, seed=8) == 250
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == EXACT_HEADER
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == list(generate_lead_csv_rows(250, seed=8))
