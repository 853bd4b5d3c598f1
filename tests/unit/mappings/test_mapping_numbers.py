"""decimal and int: declared separators, grouping by three, trailing minus, no float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from junction.core.errors import MappingError
from mappings.transforms import FieldContext, compile_transform

EN = {"decimal_sep": ".", "thousands_sep": [" ", ",", "\u00a0", "\u202f"]}
RU = {"decimal_sep": ",", "thousands_sep": [" ", ".", "\u00a0", "\u202f"]}


def dec(params=None):
    return compile_transform("decimal", params, FieldContext("annual_revenue"))


def integer(params=None):
    return compile_transform("int", params, FieldContext("employees"))


@pytest.mark.parametrize(
    ("params", "raw", "expected"),
    [
        (None, "1250000.00", "1250000.00"),
        (None, "1 250 000", "1250000"),
        (None, "1\u00a0250\u00a0000.5", "1250000.5"),
        (None, "1\u202f719", "1719"),
        (None, "  42 ", "42"),
        (None, "+7", "7"),
        (None, "-0.5", "-0.5"),
        (None, ".5", "0.5"),
        (None, "100.00-", "-100.00"),
        (None, "100.00 -", "-100.00"),
        (EN, "3,999", "3999"),
        (EN, "1,250,000.00", "1250000.00"),
        (RU, "3,999", "3.999"),
        (RU, "1,7", "1.7"),
        (RU, "200.000.000", "200000000"),
        (RU, "1 719,50", "1719.50"),
        (",", "0,71", "0.71"),
        (None, 12, "12"),
        (None, 0.1, "0.1"),
        (None, Decimal("2.50"), "2.50"),
        (None, "", None),
        (None, "   ", None),
        (None, None, None),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_decimal_good(params, raw, expected):
    out = dec(params)(raw)
    if expected is None:
        assert out is None
    else:
        assert isinstance(out, Decimal)
        assert str(out) == expected


@pytest.mark.parametrize(
    ("params", "raw"),
    [
        (None, "3,999"),  # comma is neither separator under the default (dot) locale
        (EN, "12,5"),  # groups must be three digits
        (EN, "1,25,000"),
        (RU, "1.5"),  # dot is a thousands separator there, so "1.5" is malformed
        (None, "1_000"),  # Decimal() would take it; the declared format does not
        (None, "1e5"),
        (None, "NaN"),
        (None, "Infinity"),
        (None, "١٢"),  # Arabic-Indic digits
        (None, "-100.00-"),
        (None, "-"),
        (None, "12 RUB"),
        (None, True),
        (None, float("nan")),
        (None, Decimal("Infinity")),
        (None, [1]),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_decimal_bad(params, raw):
    with pytest.raises(MappingError) as info:
        dec(params)(raw)
    assert info.value.field == "annual_revenue"
    assert info.value.context["transform"] == "decimal"


def test_decimal_never_goes_through_float():
    # a float round trip would give 0.30000000000000004 for the sum; exact decimals do not
    parse = dec(RU)
    assert parse("0,1") + parse("0,2") == Decimal("0.3")
    assert str(parse("12345678901234567890,123456789")) == "12345678901234567890.123456789"


def test_decimal_trailing_minus_can_be_switched_off():
    with pytest.raises(MappingError):
        dec({"trailing_minus": False})("100.00-")


@pytest.mark.parametrize(
    ("params", "raw", "expected"),
    [
        (None, "21", 21),
        (None, "0012", 12),
        (None, "1 200", 1200),
        (None, "-3", -3),
        (None, "12.0", 12),
        (None, "12.000", 12),
        (EN, "1,200", 1200),
        (None, "1200-", -1200),
        (None, 7, 7),
        (None, 7.0, 7),
        (None, Decimal("7.00"), 7),
        (None, "99999999999999999999", 99999999999999999999),
        (None, "", None),
        (None, None, None),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_int_good(params, raw, expected):
    out = integer(params)(raw)
    assert out == expected
    assert out is None or type(out) is int


@pytest.mark.parametrize(
    "raw",
    ["12.5", "many", "1_000", "١٢", "1,200", "1e3", 7.5, True, float("inf"), "0x10"],
    ids=lambda v: repr(v)[:24],
)
def test_int_bad(raw):
    with pytest.raises(MappingError) as info:
        integer()(raw)
    assert info.value.field == "employees"
    assert info.value.context["transform"] == "int"
    assert repr(raw)[:20] in info.value.user_message  # not personal data: the value is shown
