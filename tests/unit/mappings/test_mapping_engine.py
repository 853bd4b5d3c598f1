"""The engine: whole records in, validated models or typed errors out, nothing in between."""

from __future__ import annotations

import pickle
import random
from decimal import Decimal

import pytest

from junction.core.errors import MappingError, SchemaValidationError
from mappings.engine import compile_mapping, load_spec
from mappings.plan import run_field
from mappings.spec import parse_spec
from schemas import Contact, Lead

SPEC = """\
id: test.contact
entity: contact
source_key: '"Contact ID"'
null_values: ["", "NULL", "#N/A"]
fields:
  external_id: {key: Contact ID, required: true, transforms: [trim]}
  account_external_id: {from: account.id, transforms: [string]}
  first_name: {from: "names[0]", transforms: [trim, title]}
  last_name: {from: [surname, family_name], transforms: [coalesce, trim]}
  email: {from: email, transforms: [trim, lower, email]}
  phone: {from: phone, transforms: [{phone_e164: {region_from: country}}]}
  title: {from: title, transforms: [{default: Unknown}]}
  country: {from: country, transforms: [country]}
  city: {from: city, default: Berlin}
  updated_at: {from: updated_at, transforms: [{datetime: dd.MM.yyyy}]}
"""


@pytest.fixture(scope="module")
def mapping():
    return compile_mapping(parse_spec(SPEC, "test.yaml"))


def record(**over):
    base = {
        "Contact ID": " C-1 ",
        "account": {"id": 17},
        "names": ["jane", "x"],
        "surname": "",
        "family_name": " Doe ",
        "email": " Jane@Acme-Corp.COM ",
        "phone": "030 1234567",
        "country": "Germany",
        "updated_at": "01.03.2026",
    }
    base.update(over)
    return base


def test_apply_builds_a_validated_model(mapping):
    contact = mapping.apply(record())
    assert isinstance(contact, Contact)
    assert contact.model_dump(mode="json") == {
        "schema_version": "contact.v1",
        "external_id": "C-1",
        "account_external_id": "17",
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane@acme-corp.com",
        "phone": "+49301234567",
        "mobile": None,
        "title": "Unknown",
        "country": "DE",
        "city": "Berlin",
        "updated_at": "2026-03-01T00:00:00Z",
    }
    assert (mapping.entity, mapping.spec_id, mapping.model) == ("contact", "test.contact", Contact)


def test_null_values_defaults_and_missing_keys(mapping):
    contact = mapping.apply(
        {"Contact ID": "C-2", "title": "NULL", "city": "#N/A", "country": "", "account": "x"}
    )
    assert contact.title == "Unknown"  # the default transform replaced a null placeholder
    assert contact.city == "Berlin"  # field-level default
    assert contact.country is None
    assert contact.account_external_id is None  # account.id on a non-object is null (JMESPath)


def test_required_missing_raises(mapping):
    for raw in ({}, {"Contact ID": ""}, {"Contact ID": "   "}, {"Contact ID": "NULL"}):
        with pytest.raises(MappingError) as info:
            mapping.apply(raw)
        assert info.value.field == "external_id"
        assert "required value is missing" in info.value.user_message


def test_key_of(mapping):
    assert mapping.key_of(record()) == "C-1"
    assert mapping.key_of({"Contact ID": 42}) == "42"
    assert mapping.key_of({"Contact ID": "#N/A"}) is None
    assert mapping.key_of({}) is None


def test_keys_of_is_key_of_per_record(mapping):
    records = [
        record(),
        {"Contact ID": 42},
        {"Contact ID": "#N/A"},
        {},
        {"Contact ID": "  C-7 "},
        {"Contact ID": ""},
        {"Contact ID": 1.5},
    ]
    assert mapping.keys_of(records) == [mapping.key_of(r) for r in records]
    assert compile_mapping(load_spec("csv.lead")).keys_of([{"lead_id": " L1 "}]) == ["L1"]


def test_batch_error_mid_batch_leaves_other_rows_intact(mapping):
    rows = [
        record(**{"Contact ID": "A"}),
        record(**{"Contact ID": "B", "email": "not-an-email"}),
        record(**{"Contact ID": "C", "country": "Atlantis", "phone": "+49 30 1234567"}),
        record(**{"Contact ID": "D", "updated_at": "31.02.2026"}),
        "not a record",
        record(**{"Contact ID": "E"}),
    ]
    good, bad = mapping.apply_batch(rows)
    assert [(i, m.external_id) for i, m in good] == [(0, "A"), (5, "E")]
    assert [(i, type(e).__name__, e.field) for i, e in bad] == [
        (1, "MappingError", "email"),
        (2, "MappingError", "country"),
        (3, "MappingError", "updated_at"),
        (4, "MappingError", None),
    ]
    # the good rows are complete, identical to what apply gives one by one
    assert good[1][1] == mapping.apply(rows[5])


def test_model_rejection_becomes_schema_validation_error_naming_the_field():
    spec = parse_spec(
        "id: t.lead\nentity: lead\nfields:\n"
        "  page_views: {from: pv, transforms: [int]}\n"
        "  country: {from: c}\n",
        "t.yaml",
    )
    m = compile_mapping(spec)
    with pytest.raises(SchemaValidationError) as info:
        m.apply({"pv": "-3"})
    err = info.value
    assert err.field == "page_views"
    assert err.code == "schema_invalid"
    assert err.context["error_type"] == "greater_than_equal"
    assert err.__cause__ is None
    assert err.__suppress_context__
    with pytest.raises(SchemaValidationError) as info:
        m.apply({"c": "Germany"})  # no country transform: the model's pattern rejects it
    assert info.value.field == "country"
    # not personal data: the value is shown, with the spec line of the field
    assert "t.yaml:5: field `country`: the lead schema rejected the value 'Germany'" in str(
        info.value
    )


def test_unexpected_value_types_are_attributed_to_field_and_transform():
    spec = parse_spec(
        "id: t.lead\nentity: lead\nfields:\n"
        "  employees: {from: length(tags)}\n"
        "  email: {from: email, transforms: [trim, {null_if: [x]}]}\n",
        "t.yaml",
    )
    m = compile_mapping(spec)
    # JMESPath's length() of a number raises a type error inside the selector
    with pytest.raises(MappingError) as info:
        m.apply({"tags": 5})
    assert (info.value.field, info.value.context["transform"]) == ("employees", "selector")
    assert "length(tags)" in info.value.user_message
    # an unhashable value reaching null_if: the transform is named, the PII value is not shown
    with pytest.raises(MappingError) as info:
        m.apply({"tags": [1, 2], "email": bytearray(b"secret@x.de")})
    assert (info.value.field, info.value.context["transform"]) == ("email", "null_if")
    assert "secret" not in str(info.value)
    assert "personal data" in info.value.user_message
    good, bad = m.apply_batch([{"tags": 5}, {"tags": [1]}])
    assert [i for i, _ in good] == [1]
    assert [(i, e.field) for i, e in bad] == [(0, "employees")]


def test_interpreter_and_generated_code_agree_on_random_records(mapping):
    rng = random.Random(7)
    pool = {
        "Contact ID": ["C-1", " C-2 ", "", "NULL", None, 5],
        "account": [{"id": 1}, {"id": "A-9"}, {}, None, "x", {"id": None}],
        "names": [["ann"], [], None, ["  ", "b"], "bob"],
        "surname": ["Doe", "", None, "#N/A"],
        "family_name": ["Roe", None, ""],
        "email": ["a@acme-corp.com", " B@Acme-Corp.com", "", None, "bad"],
        "phone": ["+49 30 1234567", "030 1234567", "", None, "123"],
        "country": ["DE", "Germany", "", None, "Atlantis", "USA"],
        "title": ["CTO", "", "NULL", None],
        "city": ["Paris", "", None],
        "updated_at": ["01.03.2026", "2026-03-01T10:00:00Z", "", None, "nope"],
    }
    plans = mapping._plans
    nulls = mapping._nulls
    for _ in range(2000):
        rec = {k: rng.choice(v) for k, v in pool.items() if rng.random() < 0.9}
        expected: dict = {}
        failed_field = None
        for plan in plans:
            try:
                value = run_field(plan, rec, nulls)
            except MappingError as exc:
                failed_field = exc.field
                break
            if value is not None:
                expected[plan.target] = value
        if failed_field is None:
            assert mapping.map_values(rec) == expected
        else:
            with pytest.raises(MappingError) as info:
                mapping.map_values(rec)
            assert info.value.field == failed_field


def test_compiled_mapping_pickles_for_worker_processes(mapping):
    clone = pickle.loads(pickle.dumps(mapping))
    assert clone.apply(record()) == mapping.apply(record())
    assert clone.spec.line_of(("fields", "email")) == mapping.spec.line_of(("fields", "email"))


def test_lookup_default_survives_pickling():
    spec = parse_spec(
        "id: t.lead\nentity: lead\nfields:\n"
        "  lead_source:\n"
        "    {from: s, transforms: [{lookup: {table: {Web: web_form}, default: other}}]}\n"
        "  status: {from: st, transforms: [{lookup: {table: {o: open}}}]}\n",
        "t.yaml",
    )
    clone = pickle.loads(pickle.dumps(compile_mapping(spec)))
    lead = clone.apply({"s": "Fax", "st": "closed"})
    assert (lead.lead_source, lead.status) == ("other", "closed")


def test_builtin_csv_lead_maps_the_generated_header():
    m = compile_mapping("csv.lead")
    header = [
        *("lead_id", "first_name", "last_name", "email", "phone", "company", "title"),
        *("industry", "country", "city", "lead_source", "employees", "annual_revenue"),
        *("website", "page_views", "visits", "email_opens", "created_at"),
    ]
    assert sorted(s.sources[0].key for s in m._plans) == sorted(header)
    lead = m.apply(dict.fromkeys(header, "") | {"lead_id": "L1", "annual_revenue": "1 250 000"})
    assert isinstance(lead, Lead)
    assert lead.annual_revenue == Decimal("1250000")


class _Record(dict):
    """A dict that can be weakly referenced, to watch a record's lifetime."""


def test_batch_errors_hold_no_traceback_so_the_batch_is_freed_without_gc(mapping):
    import gc
    import weakref

    rows = [_Record(record()), _Record(record(email="not-an-email"))]
    watch = weakref.ref(rows[1])
    gc.disable()
    try:
        good, bad = mapping.apply_batch(rows)
        [(_, err)] = bad
        assert err.__traceback__ is None
        assert err.__context__ is None
        del rows, good, bad, err
        assert watch() is None  # freed by reference counting alone: no cycle kept it
    finally:
        gc.enable()


def test_apply_batch_restores_the_collector_state(mapping):
    import gc

    assert gc.isenabled()
    mapping.apply_batch([record()])
    assert gc.isenabled()
    gc.disable()
    try:
        mapping.apply_batch([record()])
        assert not gc.isenabled()  # an application that runs without GC keeps it off
    finally:
        gc.enable()
    good, _ = mapping.apply_batch([record()], pause_gc=False)
    assert len(good) == 1


@pytest.mark.parametrize(
    "values",
    [
        {"external_id": "L1", "email": "a@b.co", "employees": 3},
        {"external_id": " L1 ", "country": "de", "annual_revenue": Decimal("-1")},
        {"external_id": "L1", "page_views": -3, "created_at": "not a date"},
        {"country": "DEU", "employees": "many"},
        {},
    ],
)
def test_mapped_validator_validates_like_the_model(values):
    from pydantic import ValidationError

    from mappings.engine import mapped_validator

    fast = mapped_validator(Lead, ("external_id", "email", "country"))

    def outcome(validate):
        try:
            model = validate(values)
        except ValidationError as exc:
            return "error", exc.errors()
        return "ok", (model, model.__pydantic_fields_set__, model.__pydantic_extra__)

    assert outcome(fast) == outcome(Lead.__pydantic_validator__.validate_python)


def test_mapped_validator_keeps_extra_checks_for_unknown_targets():
    from mappings.engine import mapped_validator

    assert mapped_validator(Lead, ("nope",)) == Lead.__pydantic_validator__.validate_python
    m = compile_mapping(load_spec("csv.lead"))
    assert set(m.fields) <= set(Lead.model_fields)
