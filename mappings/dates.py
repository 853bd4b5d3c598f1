"""``datetime`` and ``date``: explicit patterns, ISO 8601, epochs, and the ERP "empty dates".

Order of attempts for text: empty markers (SAP ``00000000``, ``0000-00-00``) -> the spec's
patterns in order -> epoch digits -> ISO 8601 (stdlib, then ``dateutil.parser.isoparse``) ->
``dateutil.parser.parse`` only when ``lenient`` is set.  Patterns use the 1C/Java letters
(``dd.MM.yyyy HH:mm:ss``) or, when they contain ``%``, ``strptime`` directives.  A year-1 result
is 1C's empty date (``0001-01-01T00:00:00``, ``01.01.0001 0:00:00``) and becomes missing.
Naive stamps are read in ``tz`` (default UTC); ``datetime`` returns aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import parser as du_parser
from pydantic import Field, field_validator

from mappings.registry import FieldContext, Params, ValueFn, transform

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# epoch values at or above this are milliseconds: as seconds they would fall after year 5000
_MS_THRESHOLD = 100_000_000_000
# 'auto' reads digit strings as epochs from 9 digits up, so 8-digit yyyyMMdd stays a date
_AUTO_EPOCH_MIN_DIGITS = 9

_TOKEN = re.compile(r"yyyy|yy|MM|M|dd|d|HH|H|mm|ss|S{1,9}|f{1,9}|'[^']*'|[A-Za-z]|.", re.S)
_TOKEN_RE = {
    "yyyy": r"(?P<Y>\d{4})",
    "yy": r"(?P<y>\d{2})",
    "MM": r"(?P<m>\d{2})",
    "M": r"(?P<m>\d{1,2})",
    "dd": r"(?P<d>\d{2})",
    "d": r"(?P<d>\d{1,2})",
    "HH": r"(?P<H>\d{2})",
    "H": r"(?P<H>\d{1,2})",
    "mm": r"(?P<M>\d{2})",
    "ss": r"(?P<S>\d{2})",
}
_EMPTY_DATE_CHARS = "0-.:/ T"
# date-only text ("01.03.2026") repeats and is cached; full stamps rarely repeat
_SHORT_TEXT = 10
_SHORT_CACHE = 8192
_EPOCH_TEXT = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII).fullmatch


def compile_pattern(pattern: str) -> Callable[[str], datetime | None]:
    """Compile a 1C/Java-style pattern (or a ``strptime`` format) into ``text -> datetime``.

    Returns None when the text does not have the pattern's shape; raises ValueError when it
    has the shape but is not a real date (31.02).

    Raises:
        ValueError: At compile time, for letters that are not pattern fields.
    """
    if "%" in pattern:
        # strptime is slow (~7 us) but it is the standard for this notation
        def by_strptime(text: str) -> datetime | None:
            try:
                # naive on purpose: the caller applies the configured zone
                return datetime.strptime(text, pattern)
            except ValueError:
                return None

        return by_strptime
    parts: list[str] = []
    seen: set[str] = set()
    for tok in _TOKEN.findall(pattern):
        if tok in _TOKEN_RE:
            group = _TOKEN_RE[tok][4]
            if group in seen:
                raise ValueError(f"pattern {pattern!r} repeats {tok!r}")
            seen.add(group)
            parts.append(_TOKEN_RE[tok])
        elif tok[0] in "Sf" and tok.isalpha() and len(set(tok)) == 1:
            parts.append(r"(?P<f>\d{1,9})")
        elif tok.startswith("'"):
            parts.append(re.escape(tok[1:-1]))
        elif tok.isalpha():
            raise ValueError(f"unknown letter {tok!r} in date pattern {pattern!r}")
        else:
            parts.append(re.escape(tok))
    if not ({"Y", "y"} & seen and "m" in seen and "d" in seen):
        raise ValueError(f"date pattern {pattern!r} needs a year, a month and a day")
    match = re.compile("".join(parts), re.ASCII).fullmatch

    def by_pattern(text: str) -> datetime | None:
        m = match(text)
        if m is None:
            return None
        g = m.groupdict()
        year = int(g["Y"]) if g.get("Y") else 2000 + int(g["y"])
        frac = g.get("f")
        return datetime(
            year,
            int(g["m"]),
            int(g["d"]),
            int(g.get("H") or 0),
            int(g.get("M") or 0),
            int(g.get("S") or 0),
            int(frac[:6].ljust(6, "0")) if frac else 0,
        )

    return by_pattern


class DateTimeParams(Params):
    """Parameters of ``datetime`` and ``date``."""

    formats: tuple[str, ...] = Field((), description="Patterns tried first, in order.")
    tz: str = Field("UTC", description="IANA zone of naive stamps (1C and SAP send local time).")
    epoch: Literal["auto", "s", "ms", "off"] = Field(
        "auto", description="Numbers as Unix time: seconds, milliseconds, or by magnitude."
    )
    iso: bool = Field(True, description="Accept ISO 8601 (offsets like +0000 included).")
    lenient: Literal["off", "dayfirst", "monthfirst"] = Field(
        "off", description="Last resort: dateutil's free-form parser (slow, guesses)."
    )

    @field_validator("formats", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("formats")
    @classmethod
    def _patterns_compile(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            compile_pattern(pattern)
        return v

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


def _datetime_parser(params: DateTimeParams, ctx: FieldContext, name: str) -> ValueFn:
    """Compile ``value -> naive-or-aware datetime | None`` (None for missing / empty dates)."""
    patterns = [compile_pattern(p) for p in params.formats]
    epoch, iso, lenient = params.epoch, params.iso, params.lenient
    dayfirst = lenient == "dayfirst"
    from_iso = datetime.fromisoformat

    def from_epoch(number: Decimal | int | float) -> datetime:
        # exact arithmetic: float(ms) would blur microseconds of large stamps
        exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
        unit = epoch
        if unit == "auto":
            unit = "ms" if abs(exact) >= _MS_THRESHOLD else "s"
        millis = exact if unit == "ms" else exact * 1000
        whole = int(millis)
        return _EPOCH + timedelta(milliseconds=whole, microseconds=int((millis - whole) * 1000))

    def parse_text(text: str) -> datetime | None:
        s = text.strip()
        if not s or not s.strip(_EMPTY_DATE_CHARS):
            return None
        if iso and s[4:5] == "-" and s[7:8] == "-":
            # looks like ISO (yyyy-MM-dd...): the C parser first, it costs ~0.1 us
            try:
                return datetime.fromisoformat(s)
            except ValueError:
                pass
        for by_pattern in patterns:
            found = by_pattern(s)
            if found is not None:
                return found
        if epoch != "off" and _EPOCH_TEXT(s):
            digits = len(s.split(".")[0].lstrip("-"))
            if epoch != "auto" or digits >= _AUTO_EPOCH_MIN_DIGITS:
                return from_epoch(Decimal(s))
        if iso:
            try:
                return datetime.fromisoformat(s)
            except ValueError:
                pass
            try:
                return du_parser.isoparse(s)
            except (ValueError, OverflowError):
                pass
        if lenient != "off":
            try:
                return du_parser.parse(s, dayfirst=dayfirst)
            except (ValueError, OverflowError):
                pass
        raise ValueError("unrecognised date")

    def parse(value: Any) -> datetime | None:
        cls = value.__class__
        if cls is str and iso:
            # the common shape first: ISO 8601 (~0.1 us).  parse_text does the same after its
            # empty-date check, which no text the C parser accepts can pass (year 0000)
            s = value.strip()
            if len(s) > 9 and s[4] == "-" and s[7] == "-":
                try:
                    stamp = from_iso(s)
                except ValueError:
                    pass
                else:
                    return None if stamp.year == 1 else stamp
        if value is None:
            return None
        try:
            if cls is str:
                found = parse_text(value)
            elif isinstance(value, datetime):
                found = value
            elif isinstance(value, date):
                found = datetime(value.year, value.month, value.day)
            elif cls in (int, float, Decimal) and epoch != "off":
                found = from_epoch(value)
            else:
                raise ctx.fail(name, f"a {cls.__name__} is not a date", value)
        except (ValueError, OverflowError, InvalidOperation):
            raise ctx.fail(name, "not a valid date/time in the accepted formats", value) from None
        if found is not None and found.year == 1:
            return None
        return found

    return parse


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


@transform(
    "datetime",
    DateTimeParams,
    shorthand="formats",
    cache=_SHORT_CACHE,
    cache_max_len=_SHORT_TEXT,
)
def _datetime(params: DateTimeParams, ctx: FieldContext) -> ValueFn:
    """Text, epoch or datetime to an aware UTC datetime; naive stamps are read in ``tz``."""
    parse = _datetime_parser(params, ctx, "datetime")
    zone = _zone(params.tz)

    def to_datetime(value: Any) -> Any:
        found = parse(value)
        if found is None:
            return None
        if found.tzinfo is None:
            found = found.replace(tzinfo=zone)
        return found if found.tzinfo is UTC else found.astimezone(UTC)

    return to_datetime


@transform(
    "date", DateTimeParams, shorthand="formats", cache=_SHORT_CACHE, cache_max_len=_SHORT_TEXT
)
def _date(params: DateTimeParams, ctx: FieldContext) -> ValueFn:
    """Text, epoch or datetime to a calendar date, as written in the source (no zone shift)."""
    parse = _datetime_parser(params, ctx, "date")

    def to_date(value: Any) -> Any:
        found = parse(value)
        return None if found is None else found.date()

    return to_date
