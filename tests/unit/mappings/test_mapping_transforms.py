"""Text and structure transforms: good values, bad values, None-safety, parameter errors."""

from __future__ import annotations

import pytest

from junction.core.errors import ConfigError, MappingError
from mappings.registry import TRANSFORMS
from mappings.transforms import FieldContext, compile_transform


def fn(name, params=None, field="industry", pii=False):
    return compile_transform(name, params, FieldContext(field, pii))


@pytest.mark.parametrize(
    ("name", "params", "raw", "expected"),
    [
        ("trim", None, "  Acme GmbH\u00a0", "Acme GmbH"),
        ("trim", None, "   ", None),
        ("trim", None, 42, 42),
        ("lower", None, "Jane.DOE", "jane.doe"),
        ("upper", None, "de", "DE"),
        ("title", None, "jane DOE", "Jane Doe"),
        ("string", None, 12345, "12345"),
        ("string", None, "L-1", "L-1"),
        ("slug", None, "Web Form", "web_form"),
        ("slug", None, "  E-Mail / Campaign ", "e_mail_campaign"),
        ("slug", None, "Интернет-магазин", "интернет_магазин"),
        ("slug", {"sep": "-"}, "Trade Show", "trade-show"),
        ("slug", None, " -- ", None),
        ("default", {"value": "new"}, None, "new"),
        ("default", "new", "open", "open"),
        ("default", {"value": {"a": 1}}, None, {"a": 1}),
        ("null_if", ["Select", "unknown"], "select", None),
        ("null_if", ["Select", "unknown"], "Selected", "Selected"),
        ("null_if", {"values": ["N/A"], "ignore_case": False}, "n/a", "n/a"),
        ("null_if", [999], 999, None),
        ("concat", None, ("Jane", None, "Doe"), "Jane Doe"),
        ("concat", ", ", ("Berlin", "", "DE"), "Berlin, DE"),
        ("concat", None, (None, ""), None),
        ("coalesce", None, (None, "", "x", "y"), "x"),
        ("coalesce", None, (None, None), None),
        ("lookup", {"table": {"Web": "web_form"}}, "Web", "web_form"),
        ("lookup", {"table": {"Web": "web_form"}}, "Phone", "Phone"),
        ("lookup", {"table": {"Web": "web_form"}, "default": "other"}, "Phone", "other"),
        ("lookup", {"table": {"Web": "w"}, "default": None}, "Phone", None),
        ("lookup", {"table": {"web": "w"}, "ignore_case": True}, "WEB", "w"),
        ("lookup", {"table": {1: "one"}}, 1, "one"),
        ("bool", None, "Yes", True),
        ("bool", None, " нет ", False),
        ("bool", None, "да", True),
        ("bool", None, "0", False),
        ("bool", None, 1, True),
        ("bool", None, False, False),
        ("bool", None, "  ", None),
        ("bool", {"true_values": ["si"], "false_values": ["no"]}, "SI", True),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_transform_good_values(name, params, raw, expected):
    assert fn(name, params)(raw) == expected


@pytest.mark.parametrize(
    ("name", "params", "raw"),
    [
        ("bool", None, "maybe"),
        ("bool", None, 2),
        ("bool", {"true_values": ["si"]}, "yes"),
        ("lookup", {"table": {"Web": "w"}, "strict": True}, "Phone"),
        ("string", None, True),
        ("string", None, ["a"]),
    ],
    ids=["bool-word", "bool-2", "bool-overridden", "lookup-strict", "string-bool", "string-list"],
)
def test_transform_bad_values_raise_mapping_error_naming_field_and_transform(name, params, raw):
    with pytest.raises(MappingError) as info:
        fn(name, params, field="lead_source")(raw)
    err = info.value
    assert err.field == "lead_source"
    assert err.context["transform"] == name
    assert err.user_message.startswith(f"lead_source: {name} rejected the value")
    assert err.code == "mapping_error"


@pytest.mark.parametrize("name", sorted(n for n in TRANSFORMS if n != "default"))
def test_every_transform_passes_missing_through(name):
    tdef = TRANSFORMS[name]
    required = {
        "lookup": {"table": {}},
        "null_if": {"values": ["x"]},
    }.get(name)
    built = compile_transform(name, required, FieldContext("x", selector=lambda e: dict.get))
    call = built.fn if hasattr(built, "fn") else built
    args = (None, {}) if hasattr(built, "fn") else (None,)
    assert tdef.accepts_none is False
    assert call(*args) is None


def test_default_is_the_only_transform_called_on_missing_values():
    assert [n for n, d in TRANSFORMS.items() if d.accepts_none] == ["default"]


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("nope", None, "unknown transform 'nope'"),
        ("slug", {"sep": "--"}, "parameter 'sep'"),
        ("lookup", {"tabel": {}}, "parameter 'tabel'"),
        ("lookup", None, "parameter 'table': Field required"),
        ("decimal", {"decimal_sep": ";"}, "parameter 'decimal_sep'"),
        ("decimal", {"decimal_sep": ",", "thousands_sep": [","]}, "both decimal and thousands"),
        ("decimal", {"thousands_sep": ["x"]}, "thousands_sep 'x' is not one of"),
        ("datetime", {"tz": "Mars/Olympus"}, "unknown time zone"),
        ("datetime", {"formats": ["dd.QQ.yyyy"]}, "unknown letter 'Q'"),
        ("datetime", {"formats": ["HH:mm"]}, "needs a year, a month and a day"),
        ("phone_e164", {"default_region": "XX"}, "not a region"),
        ("phone_e164", {"region_from": "a[", "check": "valid"}, "invalid JMESPath"),
        ("country", {"languages": ["xx-nope"]}, "no country names for language"),
        ("country", {"aliases": {"Narnia": "NA1"}}, "not an ISO alpha-2 code"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_invalid_parameters_are_config_errors(name, params, fragment):
    with pytest.raises(ConfigError) as info:
        compile_transform(name, params)
    assert fragment in info.value.user_message


def test_transform_summaries_are_documented():
    assert all(d.summary for d in TRANSFORMS.values())
