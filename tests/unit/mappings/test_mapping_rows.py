"""Rows under a header (``HeaderRows``, the CSV connector's batches) map as their dicts do.

The engine reads such rows by column index with a mapper generated per header; every test
here maps the same records once as rows and once as the dicts ``dict(zip(header, row))`` and
compares the models and the errors (type, code, field, message).
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from junction.core.rows import HeaderRows, RowRecord
from mappings.engine import compile_mapping
from mappings.spec import parse_spec
from scoring.synthetic import generate_lead_csv_rows


def _mapping(fields: str, *, key: str | None = None):
    head = "id: t.lead\nentity: lead\nnull_values: ['', 'NULL', n/a]\n"
    if key:
        head += f"source_key: {key}\n"
    return compile_mapping(parse_spec(f"{head}fields:\n{fields}", "t.yaml"))


def _outcome(good, bad):
    return (
        [(i, m.model_dump()) for i, m in good],
        [(i, type(e), e.code, e.field, e.user_message) for i, e in bad],
    )


def assert_rows_map_as_dicts(mapping, header, rows):
    as_rows = mapping.apply_batch(HeaderRows(header, [list(r) for r in rows]))
    as_dicts = mapping.apply_batch([dict(zip(header, r, strict=True)) for r in rows])
    assert _outcome(*as_rows) == _outcome(*as_dicts)
    return as_rows


SPECS = {
    "text": "  first_name: {from: a, transforms: [trim]}\n  company: {from: b}\n",
    "required": "  external_id: {from: a, required: true, transforms: [trim]}\n",
    "default": "  status: {from: a, default: new}\n",
    "numbers": "  employees: {from: a, transforms: [int]}\n"
    "  annual_revenue: {from: b, transforms: [{decimal: {decimal_sep: ','}}]}\n",
    # a transform that reads another field of the record: a view of the row stands in
    "phone": "  phone: {from: a, transforms: [{phone_e164: {region_from: b}}]}\n",
    # JMESPath (not only gets): the row's dict is built for it
    "jmespath": "  company: {from: 'a || b', transforms: [trim]}\n",
    "jmespath_region": "  phone: {from: a, transforms: [{phone_e164: {region_from: 'b || c'}}]}\n",
    "chain": "  city: {from: 'a.b'}\n  title: {from: c}\n",
    "list": "  title: {from: [a, b], transforms: [{concat: {sep: ' '}}]}\n",
    "const": "  status: {const: open}\n  company: {from: c}\n",
    "missing_column": "  company: {from: zz}\n  title: {from: a}\n",
}
TEXTS = ["", " ", "NULL", "n/a", " x ", "Acme", "12", "1,5", "bad", "DE", "US", "Atlantis"]
TEXTS += ["030 1234567", "+49 30 1234567", "(415) 555-0132", "12.0"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.sampled_from(sorted(SPECS)),
    rows=st.lists(st.tuples(*[st.sampled_from(TEXTS)] * 3), min_size=1, max_size=6),
)
def test_rows_map_as_their_dicts(spec, rows):
    mapping = _mapping(SPECS[spec])
    for _ in range(2):  # a cold, then a warm cache
        assert_rows_map_as_dicts(mapping, ("a", "b", "c"), rows)


def test_csv_lead_rows_map_as_their_dicts():
    mapping = compile_mapping("csv.lead")
    records = list(generate_lead_csv_rows(2000, seed=5, messy=True))
    header = tuple(records[0])
    rows = [[str(v) for v in r.values()] for r in records]
    for i, row in enumerate(rows):
        if i % 4 == 0:  # damage some: blank, placeholder and bad values
            row[i % len(row)] = ["  ", "NULL", "bad", "-1", "x@"][i % 5]
    good, bad = assert_rows_map_as_dicts(mapping, header, rows)
    assert len(good) > 1500
    assert bad


@pytest.mark.parametrize(
    ("header", "row"),
    [
        (("a", "b", "a"), ["first", "DE", "last"]),  # a repeated name: the last one, as dict()
        (("b",), ["DE"]),  # the field's column is absent: missing, as dict.get gives
        (("c", "b", "a", "x"), ["z", "US", "(415) 555-0132", "extra"]),  # other order, extra
        ((), []),  # no columns at all
    ],
)
def test_header_shapes(header, row):
    for spec in ("text", "phone", "required", "default", "jmespath_region"):
        assert_rows_map_as_dicts(_mapping(SPECS[spec]), header, [row])


def test_one_mapper_per_header_and_a_bounded_set():
    mapping = _mapping(SPECS["text"])
    mapping.apply_batch(HeaderRows(("a", "b"), [["x", "y"]]))
    mapping.apply_batch(HeaderRows(("a", "b"), [["x", "y"]]))
    assert list(mapping._row_mappers) == [("a", "b")]
    for n in range(40):
        mapping.apply_batch(HeaderRows(("a", f"b{n}"), [["x", "y"]]))
    assert len(mapping._row_mappers) <= 16


def test_a_failure_names_the_field_and_masks_personal_values():
    mapping = _mapping("  first_name: {from: a, transforms: [int]}\n  company: {from: b}\n")
    [(i, err)] = mapping.apply_batch(HeaderRows(("a", "b"), [["Ivanov", "Acme"]]))[1]
    assert (i, err.field, err.context["transform"]) == (0, "first_name", "int")
    assert "Ivanov" not in err.user_message


def test_keys_at_reads_the_key_column():
    mapping = _mapping(SPECS["text"], key="a")
    header, rows = ("a", "b"), [[" k1 ", "x"], ["", "y"], ["NULL", "z"], ["k4", "w"]]
    table = HeaderRows(header, rows)
    dicts = list(table)
    assert mapping.keys_at(table, [0, 1, 2, 3]) == ["k1", None, None, "k4"]
    assert mapping.keys_at(table, [3, 0]) == mapping.keys_of([dicts[3], dicts[0]])
    assert mapping.keys_at(dicts, [3, 0]) == ["k4", "k1"]
    assert mapping.keys_at(HeaderRows(("b",), [["x"]]), [0]) == [None]  # no key column
    jmes = _mapping(SPECS["text"], key="'a || b'")
    assert jmes.keys_at(table, [1, 3]) == ["y", "k4"]  # not a plain key: through the dicts


def test_header_rows_read_as_their_dicts():
    table = HeaderRows(["a", "b"], [["1", "2"], ["3", "4"], ["5", "6"]])
    dicts = [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}, {"a": "5", "b": "6"}]
    assert list(table) == dicts
    assert table == dicts
    assert len(table) == 3
    assert table[1] == dicts[1]
    assert table[-1] == dicts[-1]
    assert table[1:] == HeaderRows(("a", "b"), [["3", "4"], ["5", "6"]])
    assert table != dicts[:2]
    assert table != "ab"
    assert pickle.loads(pickle.dumps(table)) == table
    assert table.columns() == {"a": 0, "b": 1}
    assert HeaderRows(["a", "a"], [["1", "2"]])[0] == {"a": "2"}  # as dict() keeps it
    assert HeaderRows(["a", "a"], []).columns() == {"a": 1}
    with pytest.raises(IndexError):
        table[3]


def test_row_record_is_the_rows_dict_for_readers():
    view = RowRecord({"a": 0, "b": 1}, ["x", "y"])
    assert dict(view) == {"a": "x", "b": "y"}
    assert len(view) == 2
    assert view.get("a") == "x"
    assert view.get("zz") is None
    assert view.get("zz", 5) == 5
    assert "b" in view
    assert "zz" not in view
    assert view["b"] == "y"
    with pytest.raises(KeyError):
        view["zz"]
