"""Synthetic leads with a known answer: the data the default model is trained on and tested with.

The generative process, for lead ``i`` of a run seeded with ``seed`` (``random.Random(seed)``,
so the output depends on nothing else):

1. Firmographics: a country (US 40 %, GB 15 %, DE 15 %, CA 12 %, AU 10 %, FR 8 %; 2 % unknown),
   a city of that country, an invented company with its legal suffix, an industry (8 slugs,
   3 % unknown) and a head count drawn log-normally (median ~33, long tail, 6 % unknown).
   Annual revenue is head count x a log-normal revenue per employee (median 120k), rounded to
   the thousand, 12 % unknown.
2. The person: a first and last name from short fictitious lists, a title drawn by seniority
   (individual 40 %, manager 25 %, director 15 %, C-level 8 %, VP 7 %, none 5 %), an email at the
   company's ``*.example.com|org|net`` domain or, for 18 %, at a free-mail provider, and for
   70 % a phone number from a range reserved for fiction (see ``_synthetic_pools``).
3. Engagement: visits ~ Exp(mean 2.5), page views ~ visits x U(1, 4) + Exp(mean 2), email
   opens ~ Exp(mean 3), all floored to integers; a lead source (8 slugs, 2 % unknown); a
   creation time uniform over 2025-01-01 .. 2026-03-01 UTC.
4. The label: ``converted ~ Bernoulli(sigmoid(TRUE_LOGIT.logit(lead)))``, a logistic model in
   exactly the model's feature space (see :class:`TrueLogit`); the base rate is about 20 %.

Because the label comes from a known linear log-odds, tests can assert that a trained model
recovers the signal: its holdout AUC and the signs of the largest true effects.

:func:`generate_lead_csv_rows` renders the SAME leads (same seed, same order) as a messy CRM
export would: national phone formats, country names, "01.03.2026" dates, human-readable
picklist values, and about 0.5 % of rows deliberately invalid so the pipeline quarantines them.
"""

from __future__ import annotations

import csv
import functools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from scoring import _synthetic_pools as pools
from scoring._synthetic_csv import CSV_HEADER, render_csv_row
from scoring.features import SENIORITY

__all__ = [
    "CSV_HEADER",
    "TRUE_LOGIT",
    "TrueLogit",
    "generate_lead_csv_rows",
    "generate_leads",
    "write_lead_csv",
]

START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 424 * 86_400  # up to 2026-03-01


def _frozen(d: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(d)


@dataclass(frozen=True)
class TrueLogit:
    """The known log-odds of conversion; an absent category (or ``None``) contributes 0."""

    intercept: float = -4.1
    lead_source: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {"referral": 1.6, "event": 0.8, "partner": 0.6, "webinar": 0.4, "web_form": 0.2}
            | {"paid_search": 0.0, "cold_call": -1.0, "purchased_list": -1.6}
        )
    )
    industry: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {"software": 0.6, "financial_services": 0.4, "consulting": 0.2, "healthcare": 0.1}
            | {"manufacturing": 0.0, "retail": -0.4, "education": -0.6, "government": -0.8}
        )
    )
    seniority: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {"c_level": 1.0, "vp": 0.9, "director": 0.6, "manager": 0.2}
            | {"individual": -0.4, "missing": -0.3}
        )
    )
    country: Mapping[str, float] = field(
        default_factory=lambda: _frozen(
            {"US": 0.3, "GB": 0.2, "CA": 0.1, "DE": 0.05, "AU": 0.0, "FR": -0.3}
        )
    )
    log_employees: float = 0.25  # per unit of log1p(employees); unknown head count adds 0
    page_views: float = 0.04
    visits: float = 0.15
    email_opens: float = 0.1
    has_phone: float = 0.7
    free_email: float = -1.2

    def logit(self, lead: Mapping[str, Any]) -> float:
        """Return the true log-odds of a canonical lead dict (seniority from its title)."""
        employees = lead.get("employees")
        email = lead.get("email") or ""
        return (
            self.intercept
            + self.lead_source.get(lead.get("lead_source") or "", 0.0)
            + self.industry.get(lead.get("industry") or "", 0.0)
            + self.seniority.get(SENIORITY[lead.get("title")], 0.0)
            + self.country.get(lead.get("country") or "", 0.0)
            + (self.log_employees * math.log1p(employees) if employees is not None else 0.0)
            + self.page_views * (lead.get("page_views") or 0)
            + self.visits * (lead.get("visits") or 0)
            + self.email_opens * (lead.get("email_opens") or 0)
            + (self.has_phone if lead.get("phone") else 0.0)
            + (self.free_email if email.rpartition("@")[2] in pools.FREE_MAIL else 0.0)
        )


TRUE_LOGIT = TrueLogit()


class _Tables:
    """Pools flattened into tuples and weighted draw tables, built once per process."""

    def __init__(self) -> None:
        self.sources = pools.LEAD_SOURCES
        self.source_table = pools.weighted_table(pools.LEAD_SOURCE_WEIGHTS)
        self.industries = pools.INDUSTRIES
        self.industry_table = pools.weighted_table(pools.INDUSTRY_WEIGHTS)
        self.levels = tuple(pools.SENIORITY_WEIGHTS)
        self.level_table = pools.weighted_table(tuple(pools.SENIORITY_WEIGHTS.values()))
        self.countries = tuple(pools.COUNTRIES.items())
        self.country_table = pools.weighted_table(tuple(c[1][2] for c in self.countries))
        self.first_ascii = tuple(pools.ascii_slug(n) for n in pools.FIRST_NAMES)
        self.last_ascii = tuple(pools.ascii_slug(n) for n in pools.LAST_NAMES)
        self.companies = tuple(
            (f"{stem} {kind}", f"{stem}-{kind}".lower())
            for stem in pools.COMPANY_STEMS
            for kind in pools.COMPANY_KINDS
        )
        self.phones = {
            (code, city): tuple(e164 for e164, _, _ in pools.phone_pool(prefix, digits))
            for code, (_, _, _, cities) in self.countries
            for city, prefix, digits in cities
        }
        # E.164 -> (national, international) for the CSV rendering
        self.phone_formats = {
            e164: (national, intl)
            for _, (_, _, _, cities) in self.countries
            for _, prefix, digits in cities
            for e164, national, intl in pools.phone_pool(prefix, digits)
        }


@functools.cache
def _tables() -> _Tables:
    # built on first use, so importing the module stays cheap
    return _Tables()


def _iter_leads(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield ``n`` canonical leads with their label, in order."""
    t = _tables()
    rng = random.Random(seed)
    # gauss (Box-Muller) and an inlined exponential are 2-3x cheaper than lognormvariate and
    # expovariate, and generation speed matters at a million rows
    rand, gauss, exp, log = rng.random, rng.gauss, math.exp, math.log
    first_names, last_names = pools.FIRST_NAMES, pools.LAST_NAMES
    n_first, n_last, n_comp = len(first_names), len(last_names), len(t.companies)
    n_titles = {lvl: len(titles) for lvl, titles in pools.TITLES.items()}
    for i in range(n):
        code, (_, legal, _, cities) = t.countries[t.country_table[int(rand() * 1000)]]
        city = cities[int(rand() * len(cities))][0]
        company, company_slug = t.companies[int(rand() * n_comp)]
        fi, li = int(rand() * n_first), int(rand() * n_last)
        level = t.levels[t.level_table[int(rand() * 1000)]]
        title = pools.TITLES[level][int(rand() * n_titles[level])]
        employees = min(int(exp(3.5 + 1.7 * gauss())) + 1, 250_000)
        revenue = round(employees * exp(11.7 + 0.6 * gauss()), -3)
        visits = int(-2.5 * log(1.0 - rand()))
        phone_k = int(rand() * pools.NUMBERS_PER_CITY)
        local = f"{t.first_ascii[fi]}.{t.last_ascii[li]}.{i + 1}"
        if rand() < 0.18:
            email = f"{local}@{pools.FREE_MAIL[int(rand() * len(pools.FREE_MAIL))]}"
        else:
            email = f"{local}@{company_slug}.{pools.DOMAIN_ROOTS[i % 3]}"
        lead: dict[str, Any] = {
            "external_id": f"L{i + 1:08d}",
            "first_name": first_names[fi],
            "last_name": last_names[li],
            "email": email,
            "phone": t.phones[code, city][phone_k] if rand() < 0.70 else None,
            "company": f"{company} {legal}",
            "title": title or None,
            "industry": t.industries[t.industry_table[int(rand() * 1000)]][0]
            if rand() >= 0.03
            else None,
            "country": code if rand() >= 0.02 else None,
            "city": city,
            "lead_source": t.sources[t.source_table[int(rand() * 1000)]][0]
            if rand() >= 0.02
            else None,
            "employees": employees if rand() >= 0.06 else None,
            "annual_revenue": Decimal(int(revenue)) if rand() >= 0.12 else None,
            "website": f"https://www.{company_slug}.{pools.DOMAIN_ROOTS[i % 3]}",
            "page_views": int(visits * (1.0 + 3.0 * rand()) - 2.0 * log(1.0 - rand())),
            "visits": visits,
            "email_opens": int(-3.0 * log(1.0 - rand())),
            "created_at": START + timedelta(seconds=int(rand() * SPAN_SECONDS)),
        }
        z = TRUE_LOGIT.logit(lead)
        lead["converted"] = 1 if rand() < 1.0 / (1.0 + exp(-z)) else 0
        yield lead


def generate_leads(n: int, seed: int) -> list[dict[str, Any]]:
    """Return ``n`` synthetic canonical leads plus their label ``converted`` (0 or 1).

    Deterministic for a given ``(n, seed)``; lead ``i`` does not depend on ``n``.
    """
    return list(_iter_leads(n, seed))


def generate_lead_csv_rows(n: int, seed: int, messy: bool = True) -> Iterator[dict[str, str]]:
    """Yield the leads of :func:`generate_leads` as rows of a CRM CSV export (``CSV_HEADER``).

    With ``messy=True`` values look as real exports have them and ~0.5 % of rows are invalid
    (an email like ``not-an-email`` or a negative employee count); with ``messy=False`` every
    value is in canonical form.  The label is not part of the export.
    """
    formats = _tables().phone_formats
    # a second stream for the messiness, so the leads equal generate_leads(n, seed)
    mess = random.Random(f"{seed}:csv").random if messy else None
    for lead in _iter_leads(n, seed):
        yield render_csv_row(lead, formats, mess)


def write_lead_csv(path: str | Path, n: int, seed: int, messy: bool = True) -> int:
    """Write :func:`generate_lead_csv_rows` to ``path`` (UTF-8, header first); return ``n``."""
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        writer.writerows(map(dict.values, generate_lead_csv_rows(n, seed, messy)))
    return n
