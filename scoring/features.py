"""The lead feature spec: what the scoring model sees of one canonical lead.

Thirteen features, in this order (``FEATURE_NAMES``):

* categorical: ``lead_source``, ``industry``, ``country`` and ``seniority`` (derived from the job
  title by keywords).  ``None`` or an empty string becomes the category ``"missing"``; other
  values are normalized (slugs lower-case with ``_``, country upper-case) so ``"Web Form"``,
  ``"web-form"`` and ``"web_form"`` are one category.
* numeric: ``log_employees`` and ``log_annual_revenue`` (``log1p``), ``page_views``, ``visits``,
  ``email_opens``.  A missing firmographic becomes 0 with a ``*_missing`` flag; a missing
  engagement count is 0, because no tracked activity and no activity look the same to us.
* binary: ``has_phone``, ``free_email`` (the email domain is a free-mail provider),
  ``employees_missing``, ``annual_revenue_missing``.

A value that cannot be a feature (a negative or infinite count, text where a number belongs, a
number where a category belongs) raises :class:`~junction.core.errors.ScoringInputError`.
``FEATURE_SCHEMA_HASH`` covers the names, kinds and derivation rules, so a model trained under
other rules is refused at load time.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from junction.core.errors import ScoringInputError

CATEGORICAL: tuple[str, ...] = ("lead_source", "industry", "country", "seniority")
NUMERIC: tuple[str, ...] = (
    "log_employees",
    "log_annual_revenue",
    "page_views",
    "visits",
    "email_opens",
)
BINARY: tuple[str, ...] = ("has_phone", "free_email", "employees_missing", "annual_revenue_missing")
FEATURE_NAMES: tuple[str, ...] = CATEGORICAL + NUMERIC + BINARY
MISSING = "missing"

# the canonical Lead fields the features are computed from, in the order derive() takes them
SOURCE_FIELDS: tuple[str, ...] = (
    "lead_source",
    "industry",
    "country",
    "title",
    "employees",
    "annual_revenue",
    "page_views",
    "visits",
    "email_opens",
    "phone",
    "email",
)

_C_LEVEL_WORDS = (
    "ceo", "cto", "cfo", "coo", "cmo", "cio", "ciso", "chief",
    "founder", "co founder", "owner", "president", "managing director",
)  # fmt: skip
# first match wins; "vice president" must be tested before "president"
SENIORITY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vp", ("vp", "svp", "evp", "vice president")),
    ("c_level", _C_LEVEL_WORDS),
    ("director", ("director", "head", "head of")),
    ("manager", ("manager", "lead", "supervisor", "team lead")),
)
SENIORITY_LEVELS: tuple[str, ...] = ("c_level", "vp", "director", "manager", "individual", MISSING)

FREE_EMAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "aol.com",
        "gmail.com",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mail.ru",
        "orange.fr",
        "outlook.com",
        "proton.me",
        "protonmail.com",
        "t-online.de",
        "web.de",
        "yahoo.com",
        "yandex.ru",
    }
)

FeatureRow = tuple[
    str, str, str, str, float, float, float, float, float, float, float, float, float
]

_CACHE_LIMIT = 65_536  # per normalizer; unique titles must not grow memory without bound
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


class _Normalizer(dict[Any, Any]):
    """A memo dict: ``norm[raw]`` is the normalized value, computed once per distinct input.

    Lookups of already seen values run at C speed, which keeps the batch path at a few
    dozen nanoseconds per value.  Unhashable inputs raise ``TypeError``.
    """

    def __init__(self, field: str, fn: Callable[[str], Any], missing: Any) -> None:
        super().__init__({None: missing, "": missing})
        self.field = field
        self.fn = fn

    def __missing__(self, raw: Any) -> Any:
        if not isinstance(raw, str):
            raise ScoringInputError(
                f"{self.field} must be text", field=self.field, context={"type": type(raw).__name__}
            )
        value = self.fn(raw)
        if len(self) < _CACHE_LIMIT:
            self[raw] = value
        return value


def _slug(raw: str) -> str:
    return _NON_ALNUM.sub("_", raw.strip().lower()).strip("_") or MISSING


def _country(raw: str) -> str:
    return raw.strip().upper() or MISSING


def _seniority(title: str) -> str:
    words = _NON_ALNUM.sub(" ", title.lower()).split()
    if not words:
        return MISSING
    # padded with spaces so that keywords match whole words only ("lead" not in "leader")
    text = " " + " ".join(words) + " "
    for level, keywords in SENIORITY_RULES:
        for word in keywords:
            if f" {word} " in text:
                return level
    return "individual"


def _free_domain(domain: str) -> float:
    return 1.0 if domain.strip().lower() in FREE_EMAIL_DOMAINS else 0.0


LEAD_SOURCE = _Normalizer("lead_source", _slug, MISSING)
INDUSTRY = _Normalizer("industry", _slug, MISSING)
COUNTRY = _Normalizer("country", _country, MISSING)
SENIORITY = _Normalizer("title", _seniority, MISSING)
FREE_DOMAIN = _Normalizer("email", _free_domain, 0.0)


def _number(value: Any, field: str) -> float:
    """Return ``value`` as a finite non-negative float, NaN for missing."""
    if value is None:
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ScoringInputError(
            f"{field} is not a number", field=field, context={"type": type(value).__name__}
        ) from None
    if x < 0.0 or x == math.inf:
        raise ScoringInputError(f"{field} must be a finite number >= 0", field=field)
    return x


def _email_free(email: Any) -> float:
    if email is None or email == "":
        return 0.0
    if not isinstance(email, str):
        raise ScoringInputError("email must be text", field="email")
    return float(FREE_DOMAIN[email[email.rfind("@") + 1 :]])


def derive(
    lead_source: Any,
    industry: Any,
    country: Any,
    title: Any,
    employees: Any,
    annual_revenue: Any,
    page_views: Any,
    visits: Any,
    email_opens: Any,
    phone: Any,
    email: Any,
) -> FeatureRow:
    """Compute the feature row from the raw canonical values (in ``SOURCE_FIELDS`` order).

    Raises:
        ScoringInputError: a value cannot be turned into its feature.
    """
    try:
        cats = (LEAD_SOURCE[lead_source], INDUSTRY[industry], COUNTRY[country], SENIORITY[title])
    except TypeError:
        raise ScoringInputError("a categorical field holds an unhashable value") from None
    emp = _number(employees, "employees")
    rev = _number(annual_revenue, "annual_revenue")
    emp_missing = emp != emp  # NaN is the only value unequal to itself
    rev_missing = rev != rev
    views = _number(page_views, "page_views")
    sessions = _number(visits, "visits")
    opens = _number(email_opens, "email_opens")
    return (
        *cats,
        0.0 if emp_missing else math.log1p(emp),
        0.0 if rev_missing else math.log1p(rev),
        0.0 if views != views else views,
        0.0 if sessions != sessions else sessions,
        0.0 if opens != opens else opens,
        1.0 if phone else 0.0,
        _email_free(email),
        1.0 if emp_missing else 0.0,
        1.0 if rev_missing else 0.0,
    )


def extract(record: Any) -> FeatureRow:
    """Return the feature row of ONE canonical lead (a mapping, or an object with the fields).

    Args:
        record: a dict of canonical Lead fields, or a ``schemas.Lead`` (any object with the
            attributes); absent fields count as missing.

    Raises:
        ScoringInputError: a field holds a value that cannot be a feature.
    """
    if isinstance(record, Mapping):
        g = record.get
        return derive(*[g(f) for f in SOURCE_FIELDS])
    return derive(*[getattr(record, f, None) for f in SOURCE_FIELDS])


def _schema_hash() -> str:
    spec = {
        "version": 1,
        "categorical": CATEGORICAL,
        "numeric": NUMERIC,
        "binary": BINARY,
        "missing": MISSING,
        "seniority_rules": SENIORITY_RULES,
        "free_email_domains": sorted(FREE_EMAIL_DOMAINS),
        "transforms": {"log_employees": "log1p", "log_annual_revenue": "log1p"},
    }
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


FEATURE_SCHEMA_HASH: str = _schema_hash()
