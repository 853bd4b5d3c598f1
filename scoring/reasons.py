"""Reason codes: a score's top factors in words a salesperson understands.

A factor is a term name and its signed contribution (log-odds for the ML scorer, points for
the rules scorer).  :func:`reasons_for` turns each non-zero factor into a
:class:`~schemas.score.Reason`: a stable ``code``, a plain-words ``text`` and a ``direction``
(``positive`` when the factor raised the score, ``negative`` when it lowered it).

Term names, the grammar both scorers emit:

* ``feature=value``: a category, e.g. ``seniority=c_level`` or ``industry=other`` (a category
  the model did not know); for a binary feature ``flag=0`` means the flag is off.
* ``feature>=x``, ``feature>x``, ``feature<=x``, ``feature<x``: a numeric threshold (rules).
* ``feature``: a numeric feature (ML, the contribution's sign tells which way it pushed) or a
  binary flag that is set (``has_phone``, ``free_email``).

Wording:

* The thirteen lead features (:mod:`scoring.features`) have a built-in phrase table, e.g.
  ``SENIORITY_C_LEVEL`` "Senior decision maker (C-level)", ``PAGE_VIEWS_HIGH`` "Visited many
  pages on the website", ``FREE_EMAIL`` "Uses a free email address", ``NO_PHONE`` "No phone
  number given", ``EMPLOYEES_UNKNOWN`` "Company size unknown".  A bare lead numeric is read as
  HIGH for a positive contribution and LOW for a negative one: more engagement and a larger
  company raise a lead's odds (pass ``effects`` to say otherwise, see below).  A threshold term
  is worded by its operator, whatever the sign, and names its threshold: ``page_views>=10`` is
  "Visited many pages on the website (page views: 10 or more)".
* Any other feature gets generic wording: ``job=blue_collar`` is ``JOB_BLUE_COLLAR`` "job =
  blue collar lowers the score"; a set flag ``pdays_missing`` is ``PDAYS_UNKNOWN`` "pdays unknown
  raises the score"; a bare numeric ``age`` is "age raises the score" (``AGE_RAISES``)
  unless ``effects`` gives the sign of its effect per unit (for a linear model, the sign of its
  coefficient), in which case the contribution's sign says exactly whether the value was above
  or below the training mean: "age is higher than usual" (``AGE_HIGH``).
* Operators replace any text by code (``overrides``, e.g. from a YAML mapping of code to text,
  :func:`load_overrides`); the code and direction stay.

Personal data never reaches a reason: a category value (or a whole term) that looks like an
email address, a phone number, a URL, or is longer than 40 characters, and any value of a
feature named like personal data (``name``, ``email``, ``phone``, ``address``, ``title``,
``company``...), is replaced by "other" (code ``<FEATURE>_OTHER``, or ``OTHER_FACTOR`` for an
unreadable term).  Lead category values (lead source, industry, country, seniority) are
normalized slugs and appear as such.

Speed: a :class:`ReasonBook` caches each ``(term, sign)`` once, the Reason and its JSON, so
the pipeline can afford reasons for every row (:meth:`ReasonBook.json_columns`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from junction.core.errors import ConfigError
from schemas.score import Factor, Reason

__all__ = [
    "DEFAULT_BOOK",
    "ReasonBook",
    "load_overrides",
    "reason_for",
    "reasons_for",
    "reasons_json",
]

FactorLike = tuple[str, float] | Factor
Direction = Literal["positive", "negative"]

_CACHE_LIMIT = 65_536
_MAX_VALUE_LEN = 40
_MAX_TEXT_LEN = 200
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
_THRESHOLD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,63})(>=|<=|>|<)([-+0-9.eE]{1,32})")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_NON_CODE = re.compile(r"[^A-Z0-9]+")
# what must never be echoed: email addresses, phone-like digit runs, URLs
_PERSONAL = re.compile(r"@|://|www\.|\d[\d\s().+/-]{5,}\d", re.IGNORECASE)
# features whose values are personal whatever they look like: their values are never shown
_PERSONAL_FEATURE = re.compile(
    r"(?:^|[_.])(?:name|first_?name|last_?name|full_?name|surname|e_?mail|phone|mobile|fax"
    r"|address|street|zip|zip_?code|postcode|postal_?code|ssn|iban|ip|url|website|birth_?date"
    r"|dob|title|job_?title|company)(?:$|[_.])",
    re.IGNORECASE,
)

# ---------------------------------------------------------------------------- the lead table

_SENIORITY: dict[str, str] = {
    "c_level": "Senior decision maker (C-level)",
    "vp": "Senior decision maker (VP)",
    "director": "Director-level contact",
    "manager": "Manager-level contact",
    "individual": "Individual contributor, not a manager",
    "missing": "Job title unknown",
    "other": "Unusual job level",
}
_LEAD_SOURCE: dict[str, str] = {
    "web_form": "Filled in a form on the website",
    "paid_search": "Came from a paid search ad",
    "event": "Met at an event",
    "referral": "Referred by someone we know",
    "webinar": "Attended a webinar",
    "partner": "Came through a partner",
    "cold_call": "Came from a cold call",
    "purchased_list": "Came from a purchased list",
    "missing": "Lead source unknown",
    "other": "Less common lead source",
}
_INDUSTRY: dict[str, str] = {"missing": "Industry unknown", "other": "Less common industry"}
_COUNTRY: dict[str, str] = {"missing": "Country unknown", "other": "Less common country"}
_CATEGORY_TABLES: dict[str, tuple[str, dict[str, str], str]] = {
    # feature: (code prefix, value -> text, text template for other values)
    "seniority": ("SENIORITY", _SENIORITY, "Job level: {}"),
    "lead_source": ("LEAD_SOURCE", _LEAD_SOURCE, "Lead source: {}"),
    "industry": ("INDUSTRY", _INDUSTRY, "Industry: {}"),
    "country": ("COUNTRY", _COUNTRY, "Country: {}"),
}

# numeric feature: (code stem, HIGH text, LOW text, label in a threshold's text)
_NUMERIC: dict[str, tuple[str, str, str, str]] = {
    "page_views": (
        "PAGE_VIEWS",
        "Visited many pages on the website",
        "Viewed few pages on the website",
        "page views",
    ),
    "visits": ("VISITS", "Came back to the website often", "Rarely visits the website", "visits"),
    "email_opens": ("EMAIL_OPENS", "Opens our emails", "Rarely opens our emails", "email opens"),
    "log_employees": ("EMPLOYEES", "Large company", "Small company", "employees"),
    "employees": ("EMPLOYEES", "Large company", "Small company", "employees"),
    "log_annual_revenue": (
        "ANNUAL_REVENUE",
        "High company revenue",
        "Low company revenue",
        "annual revenue",
    ),
    "annual_revenue": (
        "ANNUAL_REVENUE",
        "High company revenue",
        "Low company revenue",
        "annual revenue",
    ),
}
# binary feature: ((code, text) when set, (code, text) when not set)
_BINARY: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "has_phone": (("HAS_PHONE", "Gave a phone number"), ("NO_PHONE", "No phone number given")),
    "free_email": (
        ("FREE_EMAIL", "Uses a free email address"),
        ("BUSINESS_EMAIL", "Uses a business email address"),
    ),
    "employees_missing": (
        ("EMPLOYEES_UNKNOWN", "Company size unknown"),
        ("EMPLOYEES_KNOWN", "Company size known"),
    ),
    "annual_revenue_missing": (
        ("ANNUAL_REVENUE_UNKNOWN", "Company revenue unknown"),
        ("ANNUAL_REVENUE_KNOWN", "Company revenue known"),
    ),
}
_OFF_VALUES = frozenset({"0", "0.0", "false", "no"})
_ON_VALUES = frozenset({"1", "1.0", "true", "yes"})
_OP_WORDS = {">=": "{} or more", ">": "more than {}", "<=": "{} or fewer", "<": "fewer than {}"}


def _code_part(text: str) -> str:
    return _NON_CODE.sub("_", text.upper()).strip("_") or "OTHER"


def _human(name: str) -> str:
    return name.replace("_", " ").strip()


def _safe_value(value: str) -> str:
    """The value if it may be shown, else ``"other"`` (personal-looking or too long)."""
    value = value.strip()
    if not value or len(value) > _MAX_VALUE_LEN or _PERSONAL.search(value):
        return "other"
    return value


def _number_text(raw: str) -> str:
    try:
        x = float(raw)
    except ValueError:
        return raw
    if not math.isfinite(x):
        return raw
    return f"{x:,.0f}" if x == int(x) else f"{x:,.6g}"


class ReasonBook:
    """Turns factors into reasons, with operator overrides, caching each ``(term, sign)``.

    Args:
        overrides: code -> text; replaces the built-in text of that code (both directions).
        effects: numeric feature -> the sign of its effect per unit increase (for a linear
            model, its coefficient).  With it, a bare numeric term is worded exactly as higher
            or lower than usual; without it, lead numerics count as "more is better" and any
            other numeric is worded as raising or lowering the score.
        binary: names of binary features (e.g. a spec's ``binary``) beyond the lead flags, so
            their bare terms read as "flag: yes".

    Raises:
        ConfigError: an override is malformed (see :func:`load_overrides`).
    """

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        effects: Mapping[str, float] | None = None,
        binary: Iterable[str] = (),
    ) -> None:
        self.overrides: dict[str, str] = load_overrides(overrides or {})
        self.effects: dict[str, float] = {k: float(v) for k, v in (effects or {}).items()}
        self.binary: frozenset[str] = frozenset(binary) | frozenset(_BINARY)
        self._cache: dict[tuple[str, bool], tuple[Reason, bytes]] = {}

    # ------------------------------------------------------------------------- public API

    def reason(self, term: str, contribution: float) -> Reason | None:
        """The reason of one factor; ``None`` for a zero or non-finite contribution."""
        hit = self._entry(term, contribution)
        return None if hit is None else hit[0]

    def reasons_for(self, factors: Iterable[FactorLike]) -> list[Reason]:
        """Reasons of ``factors`` in their order (zero contributions left out)."""
        out: list[Reason] = []
        for term, contribution in map(_pair, factors):
            hit = self._entry(term, contribution)
            if hit is not None:
                out.append(hit[0])
        return out

    def reasons_json(self, factors: Iterable[FactorLike]) -> str:
        """:meth:`reasons_for` as a JSON array (built from cached fragments)."""
        parts: list[bytes] = []
        for term, contribution in map(_pair, factors):
            hit = self._entry(term, contribution)
            if hit is not None:
                parts.append(hit[1])
        return "[" + b",".join(parts).decode() + "]"

    def json_columns(self, factor_columns: Sequence[Sequence[tuple[str, float]]]) -> list[str]:
        """:meth:`reasons_json` for each row of a batch (``ScoreColumns.factors``: pairs)."""
        cache, entry = self._cache, self._entry
        out: list[str] = []
        for row in factor_columns:
            parts: list[bytes] = []
            for term, contribution in row:
                if not (contribution and -math.inf < contribution < math.inf):
                    continue  # zero, NaN or infinite: no reason, as in _entry
                hit = cache.get((term, contribution > 0.0))
                if hit is None:
                    hit = entry(term, contribution)
                    if hit is None:
                        continue
                parts.append(hit[1])
            out.append("[" + b",".join(parts).decode() + "]")
        return out

    # ------------------------------------------------------------------------ the wording

    def _entry(self, term: str, contribution: float) -> tuple[Reason, bytes] | None:
        if not contribution or contribution != contribution or math.isinf(contribution):
            return None
        positive = contribution > 0.0
        key = (term, positive)
        hit = self._cache.get(key)
        if hit is None:
            code, text = self._word(term, positive)
            text = self.overrides.get(code, text)
            direction: Direction = "positive" if positive else "negative"
            reason = Reason(code=code, text=text, direction=direction)
            hit = (reason, orjson.dumps({"code": code, "text": text, "direction": direction}))
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = hit
        return hit

    def _word(self, term: str, positive: bool) -> tuple[str, str]:
        """``(code, text)`` of a term; the text says which way only where the code does not."""
        m = _THRESHOLD.fullmatch(term)
        if m is not None:
            return self._threshold(m.group(1), m.group(2), m.group(3))
        feature, sep, value = term.partition("=")
        if not _IDENT.fullmatch(feature):
            return "OTHER_FACTOR", _raises("Another factor", positive)
        if sep:
            return self._category(feature, value, positive)
        return self._bare(feature, positive)

    def _threshold(self, feature: str, op: str, raw: str) -> tuple[str, str]:
        high = op in (">=", ">")
        amount = _OP_WORDS[op].format(_number_text(raw))
        known = _NUMERIC.get(feature)
        if known is not None:
            stem, high_text, low_text, label = known
            text = high_text if high else low_text
            return f"{stem}_{'HIGH' if high else 'LOW'}", f"{text} ({label}: {amount})"
        label = _human(feature)
        return f"{_code_part(feature)}_{'HIGH' if high else 'LOW'}", f"{label} is {amount}"

    def _category(self, feature: str, raw: str, positive: bool) -> tuple[str, str]:
        if feature in self.binary:
            flag = raw.strip().lower()
            if flag in _OFF_VALUES or flag in _ON_VALUES:
                return self._flag(feature, flag in _ON_VALUES, positive)
        value = "other" if _PERSONAL_FEATURE.search(feature) else _safe_value(raw)
        table = _CATEGORY_TABLES.get(feature)
        if table is not None:
            prefix, texts, template = table
            text = texts.get(value)
            if text is None:
                shown = value if feature == "country" else _human(value).capitalize()
                text = template.format(shown)
            return f"{prefix}_{_code_part(value)}", text
        subject = f"{_human(feature)} = {_human(value)}" if value != "other" else _human(feature)
        return f"{_code_part(feature)}_{_code_part(value)}", _raises(subject, positive)

    def _flag(self, feature: str, on: bool, positive: bool) -> tuple[str, str]:
        known = _BINARY.get(feature)
        if known is not None:
            return known[0] if on else known[1]
        if feature.endswith("_missing") and len(feature) > len("_missing"):
            # a declared spec's missing flag (scoring.tabular's missing_flag): known / unknown
            stem = feature[: -len("_missing")]
            state = "UNKNOWN" if on else "KNOWN"
            return f"{_code_part(stem)}_{state}", _raises(
                f"{_human(stem)} {state.lower()}", positive
            )
        word = "yes" if on else "no"
        text = _raises(f"{_human(feature)}: {word}", positive)
        return f"{_code_part(feature)}_{word.upper()}", text

    def _bare(self, feature: str, positive: bool) -> tuple[str, str]:
        if feature in self.binary:
            return self._flag(feature, True, positive)
        effect = self.effects.get(feature)
        known = _NUMERIC.get(feature)
        if known is not None:
            # lead numerics: more is better unless the effects table says otherwise
            high = positive if effect is None or effect >= 0 else not positive
            stem, high_text, low_text, _ = known
            return f"{stem}_{'HIGH' if high else 'LOW'}", high_text if high else low_text
        label, stem = _human(feature), _code_part(feature)
        if effect is None or effect == 0:
            if positive:
                return f"{stem}_RAISES", f"{label} raises the score"
            return f"{stem}_LOWERS", f"{label} lowers the score"
        high = positive == (effect > 0)
        if high:
            return f"{stem}_HIGH", f"{label} is higher than usual"
        return f"{stem}_LOW", f"{label} is lower than usual"


def _raises(subject: str, positive: bool) -> str:
    return f"{subject} {'raises' if positive else 'lowers'} the score"


def _pair(factor: FactorLike) -> tuple[str, float]:
    if isinstance(factor, Factor):
        return factor.feature, factor.contribution
    return factor[0], float(factor[1])


def load_overrides(source: Mapping[str, Any] | str | Path) -> dict[str, str]:
    """Read and check operator overrides: a mapping (or a YAML file of one) of code -> text.

    Raises:
        ConfigError: the file cannot be read, is not a mapping, or an entry is malformed (a
            code must be upper-case letters, digits and ``_``; a text non-empty, one line, at
            most 200 characters).
    """
    data: Any = source
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                "the reason overrides file cannot be read",
                context={"path": path.name, "reason": type(exc).__name__},
            ) from None
        if data is None:
            data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("reason overrides must be a mapping of code to text")
    out: dict[str, str] = {}
    for code, text in data.items():
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise ConfigError(
                "a reason override's code must be upper-case letters, digits and _",
                context={"code": str(code)[:64]},
            )
        if (
            not isinstance(text, str)
            or not text.strip()
            or len(text) > _MAX_TEXT_LEN
            or "\n" in text
        ):
            raise ConfigError(
                "a reason override's text must be one non-empty line of at most 200 characters",
                context={"code": code},
            )
        out[code] = text.strip()
    return out


DEFAULT_BOOK = ReasonBook()
"""The built-in wording, no overrides: what :func:`reasons_for` and :func:`reasons_json` use."""


def reason_for(term: str, contribution: float) -> Reason | None:
    """The reason of one factor under the built-in wording (``None`` for a zero contribution)."""
    return DEFAULT_BOOK.reason(term, contribution)


def reasons_for(factors: Iterable[FactorLike]) -> list[Reason]:
    """Reasons of ``factors`` (``(term, contribution)`` pairs or Factors), built-in wording."""
    return DEFAULT_BOOK.reasons_for(factors)


def reasons_json(factors: Iterable[FactorLike]) -> str:
    """:func:`reasons_for` as a JSON array string, for the pipeline's event JSON."""
    return DEFAULT_BOOK.reasons_json(factors)
