"""The YAML spec: validation errors carry the file and the line of the offending node."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from mappings.engine import compile_mapping, load_spec
from mappings.spec import MappingSpec, parse_spec

GOOD = """\
id: test.lead
entity: lead
source_key: lead_id
fields:
  external_id: {from: lead_id, required: true}
  email: {from: email, transforms: [trim, lower, email]}
  phone: {from: phone, transforms: [{phone_e164: {region_from: country}}]}
  annual_revenue:
    from: annual_revenue
    transforms:
      - trim
      - decimal: {decimal_sep: ",", thousands_sep: [" ", "."]}
  company: {key: "Company Name"}
  first_name: {from: [given, middle], transforms: [concat]}
"""


def test_good_spec_parses():
    spec = parse_spec(GOOD, "good.yaml")
    assert spec.id == "test.lead"
    assert list(spec.fields) == [
        "external_id",
        "email",
        "phone",
        "annual_revenue",
        "company",
        "first_name",
    ]
    step = spec.fields["annual_revenue"].transforms[1]
    assert step.name == "decimal"
    assert step.params.decimal_sep == ","  # type: ignore[attr-defined]
    assert spec.line_of(("fields", "annual_revenue", "transforms", 1)) == 12
    assert spec.source == "good.yaml"


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ('decimal_sep: ","', 'decimal_sep: ";"', 12, "parameter 'decimal_sep'"),
        ("[trim, lower, email]", "[trim, lowr]", 6, "unknown transform 'lowr'"),
        ("required: true", "requird: true", 5, "requird: Extra inputs are not permitted"),
        ("  external_id:", "  externl_id:", 5, "lead has no field 'externl_id'"),
        ("entity: lead", "entity: leed", 2, "entity: Input should be"),
        (
            "{from: lead_id, required: true}",
            "{from: 'lead_id[', required: true}",
            5,
            "invalid JMESPath",
        ),
        ("region_from: country", "region_frm: country", 7, "parameter 'region_frm'"),
        ("[concat]", "[trim]", 14, "must start with a list transform"),
        ("{from: email, transforms", "{from: email, key: email, transforms", 6, "exactly one of"),
        ("  company: {key", "  company: {const: x, key", 13, "exactly one of"),
        ("id: test.lead", "id: 'test lead'", 1, "id: String should match pattern"),
        ("source_key: lead_id", "source_key: '[?'", 3, "invalid JMESPath"),
        ("source_key: lead_id", "source_key: [a", 4, "flow sequence started on line 3"),
        ("      - trim\n", "      - trim\n      - concat\n", 10, "[1] 'concat' needs a list"),
        ("      - trim\n", "      - {trim: 1, lower: 2}\n", 11, "one-key mapping"),
        (
            "fields:\n",
            "fields:\n  schema_version: {const: lead.v2}\n",
            5,
            "no field 'schema_version'",
        ),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_spec_errors_name_the_line(old, new, line, fragment):
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse_spec(GOOD.replace(old, new, 1), "bad.yaml")
    err = info.value
    assert err.context["line"] == line, err.user_message
    assert err.user_message.startswith(f"bad.yaml:{line}: ")
    assert fragment in err.user_message


def test_duplicate_keys_are_errors_not_silently_overwritten():
    with pytest.raises(ConfigError) as info:
        parse_spec(GOOD + "  email: {from: other}\n", "dup.yaml")
    assert info.value.context["line"] == 15
    assert "duplicate key 'email'" in info.value.user_message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the spec is empty"),
        ("- a\n", "must be a mapping"),
        ("id: x\n", "entity: Field required"),
    ],
    ids=["empty", "list", "incomplete"],
)
def test_whole_document_errors(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_spec(text, "x.yaml")
    assert fragment in info.value.user_message
    assert info.value.context["line"] == 1


def test_yaml_tags_that_build_objects_are_refused():
    with pytest.raises(ConfigError, match="YAML syntax"):
        parse_spec(GOOD + "extra: !!python/object/apply:os.system ['true']\n", "x.yaml")


def test_load_spec_by_path_and_builtin_id_check(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert load_spec(path).id == "test.lead"
    assert load_spec(str(path)).source == str(path)
    with pytest.raises(ConfigError, match=r"unknown mapping spec 'csv\.nothing'"):
        load_spec("csv.nothing")
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "missing.yaml")


def test_specs_built_in_code_are_checked_at_compile_time():
    spec = MappingSpec.model_validate(
        {"id": "code.lead", "entity": "lead", "fields": {"nope": {"from": "x"}}}
    )
    with pytest.raises(ConfigError, match="lead has no field 'nope'"):
        compile_mapping(spec)
