"""Render a canonical synthetic lead as one row of a CRM CSV export (used by scoring.synthetic).

Messy mode imitates what real exports contain, with these shares per row:

* phone: E.164 40 %, international spacing ("+49 30 23125120") 25 %, national format
  ("(415) 555-0132", "030 23125120") 35 % when the country is known;
* email: upper-cased 4 %, padded with spaces 3 %;
* country: ISO code 45 %, English name ("Germany", "United States") 55 %;
* industry and lead source: picklist labels ("Web Form", "Financial Services"), lower-cased 5 %;
* website: without scheme 30 %;
* created_at: ISO 8601 UTC ("2026-03-01T10:00:00Z") 80 %, German date ("01.03.2026") 20 %;
* 0.5 % of rows invalid on purpose: half with the email "not-an-email", half with a negative
  employee count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from scoring import _synthetic_pools as pools

CSV_HEADER: tuple[str, ...] = (
    "lead_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "industry",
    "country",
    "city",
    "lead_source",
    "employees",
    "annual_revenue",
    "website",
    "page_views",
    "visits",
    "email_opens",
    "created_at",
)
BAD_ROW_SHARE = 0.005
BAD_EMAIL = "not-an-email"

_LABELS: dict[str, str] = dict(pools.LEAD_SOURCES) | dict(pools.INDUSTRIES)
_COUNTRY_NAMES: dict[str, str] = {code: spec[0] for code, spec in pools.COUNTRIES.items()}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _iso(ts: datetime) -> str:
    # isoformat of an aware UTC datetime ends in "+00:00"; exports write "Z"
    return ts.isoformat()[:-6] + "Z"


def render_csv_row(
    lead: Mapping[str, Any],
    phone_formats: Mapping[str, tuple[str, str]],
    mess: Callable[[], float] | None,
) -> dict[str, str]:
    """Return ``lead`` as a ``{CSV_HEADER column: text}`` row.

    Args:
        lead: a canonical lead from ``scoring.synthetic``.
        phone_formats: E.164 -> (national, international) formatting of every pool number.
        mess: the random stream for messiness, or ``None`` for canonical text.
    """
    revenue = lead["annual_revenue"]
    row = {
        "lead_id": lead["external_id"],
        "first_name": lead["first_name"],
        "last_name": lead["last_name"],
        "email": lead["email"],
        "phone": _text(lead["phone"]),
        "company": lead["company"],
        "title": _text(lead["title"]),
        "industry": _text(lead["industry"]),
        "country": _text(lead["country"]),
        "city": lead["city"],
        "lead_source": _text(lead["lead_source"]),
        "employees": _text(lead["employees"]),
        "annual_revenue": "" if revenue is None else f"{revenue}.00",
        "website": lead["website"],
        "page_views": str(lead["page_views"]),
        "visits": str(lead["visits"]),
        "email_opens": str(lead["email_opens"]),
        "created_at": _iso(lead["created_at"]),
    }
    if mess is not None:
        _mess_up(row, lead, phone_formats, mess)
    return row


def _mess_up(
    row: dict[str, str],
    lead: Mapping[str, Any],
    phone_formats: Mapping[str, tuple[str, str]],
    mess: Callable[[], float],
) -> None:
    country = lead["country"]
    phone = lead["phone"]
    if phone is not None:
        r = mess()
        if r >= 0.40:
            national, intl = phone_formats[phone]
            row["phone"] = intl if r < 0.65 or country is None else national
    r = mess()
    if r < 0.04:
        row["email"] = row["email"].upper()
    elif r < 0.07:
        row["email"] = f" {row['email']} "
    if country is not None and mess() < 0.55:
        row["country"] = _COUNTRY_NAMES[country]
    for key in ("industry", "lead_source"):
        slug = lead[key]
        if slug is not None:
            label = _LABELS[slug]
            row[key] = label.lower() if mess() < 0.05 else label
    if mess() < 0.30:
        row["website"] = row["website"].removeprefix("https://")
    if mess() < 0.20:
        ts: datetime = lead["created_at"]
        row["created_at"] = f"{ts.day:02d}.{ts.month:02d}.{ts.year}"
    if mess() < BAD_ROW_SHARE:
        if mess() < 0.5:
            row["email"] = BAD_EMAIL
        else:
            row["employees"] = f"-{lead['employees'] or 1}"
