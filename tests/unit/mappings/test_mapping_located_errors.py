"""Record errors say where the field is written in the spec, show the value masked, and the fix."""

from __future__ import annotations

import pytest

import mappings.engine as engine
from junction.core.errors import MappingError, SchemaValidationError
from mappings.engine import SPECS_DIR, compile_mapping
from mappings.spec import parse_spec


def _line(spec: str, key: str) -> int:
    text = (SPECS_DIR / spec).read_text().splitlines()
    return next(i for i, line in enumerate(text, 1) if line.startswith(f"  {key}:"))


def test_a_transform_error_names_file_line_field_masked_value_and_fix() -> None:
    mapping = compile_mapping("csv.lead")
    with pytest.raises(MappingError) as info:
        mapping.apply({"lead_id": "L1", "email": "jane.doe@@example.com"})
    err = info.value
    line = _line("csv/lead.yaml", "email")
    assert err.user_message == (
        f"mappings/specs/csv/lead.yaml:{line}: field `email`: email rejected the value "
        "'j***@example.com' (personal data, masked; not a valid email address) — fix: correct "
        "the address in the source, or drop the `email` transform to keep it as text"
    )
    assert err.context["spec"] == "csv.lead"
    assert err.context["spec_line"] == line
    assert err.context["spec_file"] == "mappings/specs/csv/lead.yaml"
    assert (err.field, err.code) == ("email", "mapping_error")


def test_a_missing_required_field_says_how_to_fix_the_spec() -> None:
    mapping = compile_mapping("csv.lead")
    _, [(_, err)] = mapping.apply_batch([{"email": "a@b.de"}])
    assert err.user_message.startswith(
        f"mappings/specs/csv/lead.yaml:{_line('csv/lead.yaml', 'external_id')}: "
        "field `external_id`: required value is missing — fix: fill `external_id` in the source"
    )


def test_a_schema_error_shows_the_value_masked_by_class() -> None:
    mapping = compile_mapping("csv.contact")
    _, [(_, err)] = mapping.apply_batch([{"contact_id": "C3", "first_name": ["Zyxwvutsrq"]}])
    assert isinstance(err, SchemaValidationError)
    assert "field `first_name`: the contact schema rejected the value ['Z.']" in err.user_message
    assert "personal data, masked" in err.user_message
    assert "Zyxwvutsrq" not in str(err)


def test_a_non_personal_value_is_shown_and_a_spec_built_in_code_is_named_by_its_id() -> None:
    spec = parse_spec("id: t.lead\nentity: lead\nfields:\n  page_views: {from: pv}\n")
    with pytest.raises(SchemaValidationError) as info:
        compile_mapping(spec).apply({"pv": "-3"})
    assert info.value.user_message.startswith(
        "mapping t.lead: field `page_views`: the lead schema rejected the value '-3'"
    )


def test_records_that_map_never_build_a_location(monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = compile_mapping("csv.lead")

    def not_on_the_hot_path(*_a: object) -> None:
        raise AssertionError("located() ran for a good record")

    monkeypatch.setattr(engine, "located", not_on_the_hot_path)
    good, bad = mapping.apply_batch([{"lead_id": f"L{i}", "email": "a@b.de"} for i in range(50)])
    assert (len(good), bad) == (50, [])
