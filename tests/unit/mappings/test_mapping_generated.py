"""The generated mapper's inlined text ops and in-place caches equal the plain interpreter.

``run_field`` interprets a plan with the plain closures (no caches, nothing inlined); every test
here feeds the same records to the generated code and to it, on messy values: None, non-str
values, whitespace-only text, null placeholders, bad values (same error type, code, field).
"""

from __future__ import annotations

from collections import UserDict
from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from junction.core.errors import MappingError
from mappings.engine import _VALUE_FAILURES, compile_mapping
from mappings.plan import run_field
from mappings.registry import memoize
from mappings.spec import parse_spec
from scoring.synthetic import generate_lead_csv_rows


class Text(str):
    """A str subclass: never inlined nor cached (the closures see its class)."""


# each chain maps key `v` into `first_name` (personal data) or `company`; `status` copies `v`
# untransformed, so the records are read through the itemgetter prologue
CHAINS = {
    "trim": "[trim]",
    "trim_lower": "[trim, lower]",
    "lower_trim_title": "[lower, trim, title]",
    "upper_title": "[upper, title]",
    "trim_then_closure": "[trim, upper, {null_if: [X, 'N/A']}]",
    "int": "[int]",
    "trim_int": "[trim, int]",
    "decimal_comma": "[trim, {decimal: {decimal_sep: ',', thousands_sep: ['.', ' ']}}]",
    "decimal": "[decimal]",
    "slug_lookup_strict": "[slug, {lookup: {table: {web_form: Web, a: A}, strict: true}}]",
    "lookup_default": "[{lookup: {table: {X: Y, ' a ': b}, ignore_case: true, default: other}}]",
    "string_lookup": "[string, {lookup: {table: {'1': one, '5': five}}}]",
    "bool_string": "[bool, string]",
    "bool_upper": "[bool, upper]",
    "int_trim": "[int, trim]",
    "lookup_list_slug": "[{lookup: {table: {x: [1, 2], b: B}}}, slug]",
    "country": "[country]",
    "trim_country_lower": "[trim, country, lower]",
    "datetime": "[{datetime: {formats: [dd.MM.yyyy, 'dd.MM.yyyy HH:mm:ss']}}]",
    "date": "[{date: [yyyyMMdd, dd.MM.yyyy]}]",
    "phone": "[trim, {phone_e164: {region_from: c, default_region: DE}}]",
}
SHAPES = {
    "plain": "{}",
    "required": "{required: true}",
    "default": "{default: fallback}",
}

TEXTS = [
    *("", " ", "\u00a0", "  \t ", "NULL", " NULL ", "n/a", "Null", "x", "X", " a ", "A"),
    *("Web Form", "web_form", " ß straße ", "İstanbul", "ǅemal", "Ünïcödé", "-", "--"),
    *("5", " 5 ", "15", "007", "12.0", "12.5", "1 200", "1,5", "1.234,5", "100.00-", "-0"),
    *("1e5", "NaN", "1_000", "١٢", "abc", "yes", "NO", "да", "1", "0", "maybe"),
    *("Germany", "DE", " deu ", "USA", "Atlantis", "россия"),
    *("01.03.2026", "2026-03-01T10:00:00Z", " 2026-03-01 ", "00000000", "20260301"),
    *("0001-01-01T00:00:00", "31.02.2026", "01.03.2026 10:11:12", "1700000000000"),
    *("030 1234567", "+49 30 1234567", "(415) 555-0132", "12"),
]
OTHERS = [
    *(None, 5, 0, 1, -3, 12.0, 12.5, float("inf"), True, False),
    *(Decimal("7.50"), Decimal("NaN"), [1], {"a": 1}, b"x"),
    *(date(2026, 3, 1), datetime(2026, 3, 1, 10, 0), Text("5"), Text(" NULL "), Text("DE")),
]
values = st.one_of(st.sampled_from(TEXTS), st.sampled_from(OTHERS), st.text(max_size=6))


def _spec(chain: str, shape: str, target: str) -> str:
    extra = SHAPES[shape][1:-1]
    extra = f", {extra}" if extra else ""
    return (
        f"id: t.lead\nentity: lead\nnull_values: ['', 'NULL', n/a]\nfields:\n"
        f"  {target}: {{from: v, transforms: {CHAINS[chain]}{extra}}}\n"
        "  status: {from: v}\n"
    )


MAPPINGS = {
    (chain, shape, target): compile_mapping(parse_spec(_spec(chain, shape, target), "t.yaml"))
    for chain in CHAINS
    for shape in SHAPES
    for target in ("first_name", "company")
}


def reference(mapping, record):
    """The interpreter's answer: the mapped values, or the error the engine must raise."""
    out = {}
    for plan in mapping._plans:
        try:
            value = run_field(plan, record, mapping._nulls)
        except MappingError as exc:
            return exc
        except _VALUE_FAILURES as exc:
            return mapping._field_failure(plan, record, exc)
        if value is not None:
            out[plan.target] = value
    return out


def assert_same(mapping, record):
    expected = reference(mapping, record)
    if isinstance(expected, MappingError):
        with pytest.raises(MappingError) as info:
            mapping.map_values(record)
        got = info.value
        assert (type(got), got.code, got.field) == (type(expected), expected.code, expected.field)
        assert got.context == expected.context
        assert got.user_message == expected.user_message
        return
    got = mapping.map_values(record)
    # types too: 5 == Decimal(5) == 5.0, and True == 1
    assert {k: (type(v), v) for k, v in got.items()} == {
        k: (type(v), v) for k, v in expected.items()
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(sorted(MAPPINGS)),
    value=values,
    country=st.sampled_from(["DE", "US", "Atlantis", None, 7]),
)
def test_generated_code_equals_the_interpreter(key, value, country):
    mapping = MAPPINGS[key]
    record = {"v": value, "c": country}
    assert_same(mapping, record)
    assert_same(mapping, record)  # again: now from the caches


@pytest.mark.parametrize("key", sorted(MAPPINGS), ids="-".join)
def test_every_pooled_value_on_every_chain(key):
    mapping = MAPPINGS[key]
    for value in [*TEXTS, *OTHERS]:
        for _ in range(2):  # a miss, then a cache hit
            assert_same(mapping, {"v": value, "c": "US"})


def test_records_that_are_not_plain_dicts_or_lack_keys():
    mapping = MAPPINGS[("trim_int", "default", "company")]
    for record in ({}, {"c": "DE"}, UserDict({"v": " 5 "}), UserDict()):
        assert_same(mapping, record)
    assert mapping.map_values(UserDict({"v": " 5 "})) == {"company": 5, "status": " 5 "}
    assert mapping.map_values({}) == {"company": "fallback"}


@pytest.mark.parametrize(
    "fields",
    [
        "  status: {const: new}\n",  # nothing read: the record is still checked
        "  status: {from: s}\n",  # one key: a get
        "  status: {from: s}\n  city: {key: c, transforms: [trim]}\n",  # keys read at once
        "  status: {from: 'a.b'}\n",  # a selector
    ],
)
def test_a_record_that_is_no_mapping_fails_in_every_prologue(fields):
    mapping = compile_mapping(parse_spec(f"id: t.lead\nentity: lead\nfields:\n{fields}", "t"))
    good, bad = mapping.apply_batch(["not a record", {"s": "x", "c": " y ", "a": {"b": "x"}}])
    assert [i for i, _ in good] == [1]
    assert [(i, e.user_message) for i, e in bad] == [(0, "the record is a str, not a mapping")]


def test_errors_are_not_cached_and_keep_the_field():
    mapping = MAPPINGS[("int", "plain", "company")]
    for _ in range(3):
        with pytest.raises(MappingError) as info:
            mapping.map_values({"v": "12.5"})
        assert (info.value.field, info.value.context["transform"]) == ("company", "int")
        assert "'12.5'" in info.value.user_message
    [plan, _] = mapping._plans
    assert "12.5" not in plan.steps[0].memo.cache
    personal = MAPPINGS[("country", "plain", "first_name")]
    with pytest.raises(MappingError) as info:
        personal.map_values({"v": "Atlantis"})
    assert info.value.field == "first_name"
    assert "Atlantis" not in str(info.value)


def test_csv_lead_generated_equals_interpreter_on_messy_rows():
    mapping = compile_mapping("csv.lead")
    rows = list(generate_lead_csv_rows(3000, seed=11, messy=True))
    for i, row in enumerate(rows):
        if i % 3 == 0:  # damage some: non-str, blank, placeholder and bad values
            key = list(row)[i % len(row)]
            row[key] = [None, 7, "  ", "NULL", "bad", 1.5, Text("5")][i % 7]
        assert_same(mapping, row)


def test_generated_code_holds_no_spec_text():
    spec = parse_spec(
        "id: t.lead\nentity: lead\nnull_values: ['x); import os #']\nfields:\n"
        '  company: {key: \'a"); __import__("os") #\', transforms: [trim]}\n'
        '  city: {key: "b\'", default: "\'); x = (\'"}\n',
        "t.yaml",
    )
    mapper = compile_mapping(spec)._map
    code = mapper.__code__
    texts = [c for c in code.co_consts if isinstance(c, str)]
    assert all(name.isidentifier() for name in (*code.co_names, *code.co_freevars, *texts))
    assert mapper({'a"); __import__("os") #': " Acme "}) == {
        "company": "Acme",
        "city": "'); x = ('",
    }


def test_memoize_caches_exact_short_strings_only():
    calls = []

    def fn(value):
        calls.append(value)
        if value == "bad":
            raise ValueError("bad")
        return None if value is None else f"<{value}>"

    memo = memoize(fn, maxsize=3, max_len=4)
    assert [memo.cached(v) for v in ("ab", "ab", Text("ab"), None, "long text")] == [
        "<ab>",
        "<ab>",
        "<ab>",
        None,
        "<long text>",
    ]
    assert calls == ["ab", "ab", None, "long text"]  # the subclass and long text uncached
    assert memo.cache == {"ab": "<ab>"}
    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            memo.cached("bad")
    assert "bad" not in memo.cache
    for v in ("c", "d", "e"):
        memo.store(v)
    assert len(memo.cache) <= 3  # cleared when full, never above maxsize
