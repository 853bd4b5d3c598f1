"""datetime and date: 1C patterns, ISO 8601, offsets, epochs, ERP empty dates, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from junction.core.errors import MappingError
from mappings.dates import compile_pattern
from mappings.transforms import FieldContext, compile_transform

ONEC = {"formats": ["dd.MM.yyyy", "dd.MM.yyyy HH:mm:ss"]}


def dt(params=None):
    return compile_transform("datetime", params, FieldContext("created_at"))


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "raw", "expected"),
    [
        (ONEC, "01.03.2026", utc(2026, 3, 1)),
        (ONEC, "01.03.2026 14:30:05", utc(2026, 3, 1, 14, 30, 5)),
        (ONEC, " 01.03.2026 ", utc(2026, 3, 1)),
        (None, "2026-03-01", utc(2026, 3, 1)),
        (None, "2026-03-01T10:00:00Z", utc(2026, 3, 1, 10)),
        (None, "2026-03-01 10:00:00", utc(2026, 3, 1, 10)),
        (None, "2022-01-02T15:41:15.000+0000", utc(2022, 1, 2, 15, 41, 15)),
        (None, "2026-03-01T10:00:00+03:00", utc(2026, 3, 1, 7)),
        (None, "2026-03-01T10:00:00.123456789Z", utc(2026, 3, 1, 10, 0, 0, 123456)),
        (None, "20260301", utc(2026, 3, 1)),
        (None, "1572480000000", utc(2019, 10, 31)),  # HubSpot: ms epoch as a string
        (None, "1572480000", utc(2019, 10, 31)),  # SendGrid: seconds
        (None, 1572480000000, utc(2019, 10, 31)),
        (None, 1572480000.5, utc(2019, 10, 31, 0, 0, 0, 500000)),
        (None, Decimal("1572480000"), utc(2019, 10, 31)),
        ({"epoch": "ms"}, "86400000", utc(1970, 1, 2)),
        ({"epoch": "s"}, "86400", utc(1970, 1, 2)),
        (None, "00000000", None),  # SAP empty date
        (None, "0000-00-00 00:00:00", None),
        (None, "0001-01-01T00:00:00", None),  # 1C empty date
        (ONEC, "01.01.0001 00:00:00", None),
        (None, "", None),
        (None, None, None),
        (None, utc(2026, 3, 1), utc(2026, 3, 1)),
        (None, datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=2))), utc(2026, 3, 1, 10)),
        (None, date(2026, 3, 1), utc(2026, 3, 1)),
        ({"formats": "yyyyMMdd HHmmss"}, "20260301 101112", utc(2026, 3, 1, 10, 11, 12)),
        ({"formats": "d.M.yy H:mm"}, "1.3.26 9:05", utc(2026, 3, 1, 9, 5)),
        (
            {"formats": "dd/MM/yyyy'T'HH:mm:ss.SSS"},
            "01/03/2026T10:00:00.250",
            utc(2026, 3, 1, 10, 0, 0, 250000),
        ),
        ({"formats": "%d %b %Y"}, "01 Mar 2026", utc(2026, 3, 1)),
        ({"lenient": "dayfirst"}, "1 March 2026 10:00", utc(2026, 3, 1, 10)),
        ({"lenient": "dayfirst"}, "02/03/2026", utc(2026, 3, 2)),
        ({"lenient": "monthfirst"}, "02/03/2026", utc(2026, 2, 3)),
    ],
    ids=lambda v: repr(v)[:28],
)
def test_datetime_good(params, raw, expected):
    out = dt(params)(raw)
    assert out == expected
    if out is not None:
        assert out.tzinfo is UTC


def test_naive_stamps_are_read_in_the_configured_zone():
    moscow = dt({**ONEC, "tz": "Europe/Moscow"})
    assert moscow("01.03.2026 12:00:00") == utc(2026, 3, 1, 9)
    assert moscow("2026-03-01T12:00:00") == utc(2026, 3, 1, 9)
    # an explicit offset wins over the configured zone
    assert moscow("2026-03-01T12:00:00Z") == utc(2026, 3, 1, 12)
    # DST: Berlin is UTC+2 in July
    assert dt({"tz": "Europe/Berlin"})("2026-07-01 12:00:00") == utc(2026, 7, 1, 10)


@pytest.mark.parametrize(
    ("params", "raw"),
    [
        (ONEC, "31.02.2026"),
        (ONEC, "01.13.2026"),
        (None, "01.03.2026"),  # no pattern declared and not ISO
        (None, "yesterday"),
        ({"iso": False}, "2026-03-01"),
        ({"epoch": "off"}, "1572480000"),
        ({"epoch": "off"}, 1572480000),
        (None, "99999999999999999999999"),
        (None, True),
        (None, ["2026-03-01"]),
    ],
    ids=lambda v: repr(v)[:28],
)
def test_datetime_bad(params, raw):
    with pytest.raises(MappingError) as info:
        dt(params)(raw)
    assert info.value.field == "created_at"
    assert info.value.context["transform"] == "datetime"


def test_date_keeps_the_calendar_date_as_written():
    to_date = compile_transform("date", ONEC, FieldContext("due"))
    assert to_date("01.03.2026") == date(2026, 3, 1)
    assert to_date("2026-03-01T23:30:00-05:00") == date(2026, 3, 1)
    assert to_date("00000000") is None
    assert to_date("0001-01-01") is None
    with pytest.raises(MappingError):
        to_date("30.02.2026")


def test_repeated_date_text_is_served_consistently():
    parse = dt(ONEC)
    first = parse("01.03.2026")
    assert parse("01.03.2026") == first == utc(2026, 3, 1)
    assert parse("01.01.0001") is None
    assert parse("01.01.0001") is None


def test_compile_pattern_reports_shape_mismatch_as_none():
    by_pattern = compile_pattern("dd.MM.yyyy")
    assert by_pattern("2026-03-01") is None
    assert by_pattern("01.03.2026") == datetime(2026, 3, 1)
    with pytest.raises(ValueError, match="repeats"):
        compile_pattern("dd.dd.yyyy")
