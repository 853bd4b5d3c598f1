"""Personal data never reaches error messages, which end up in logs and dead-letter rows."""

from __future__ import annotations

import traceback

import pytest

from junction.core.errors import MappingError, RecordError
from mappings.engine import compile_mapping
from schemas import Contact, Lead

SECRET_EMAIL = "john.secret-person@@acme-corp.com"
SECRET_PHONE = "+1 999 876 5432"
SECRET_NAME = "Zyxwvutsrq"


def _all_text(err: BaseException) -> str:
    parts = [str(err), repr(err), err.user_message, str(err.details), str(err.to_dict())]  # type: ignore[attr-defined]
    parts.append("".join(traceback.format_exception(err)))
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("email", SECRET_EMAIL),
        ("email", "Zyxwvutsrq <zyx@acme-corp.com>"),
        ("phone", SECRET_PHONE),
        ("phone", "+7 123 4567"),
    ],
    ids=["email-syntax", "email-display-name", "phone-bad-area-code", "phone-invalid"],
)
def test_pii_values_never_appear_in_mapping_errors(field, raw):
    mapping = compile_mapping("csv.lead")
    assert field in Lead.pii_fields()
    with pytest.raises(MappingError) as info:
        mapping.apply({"lead_id": "L1", field: raw, "country": "DE"})
    err = info.value
    assert err.field == field
    text = _all_text(err)
    assert raw not in text
    assert raw.strip().split("@")[0] not in text
    # masked by class, never in clear: a***@example.com, +44*******123
    assert "***" in err.user_message


def test_pii_values_never_appear_in_batch_errors_or_schema_errors():
    mapping = compile_mapping("csv.contact")
    assert "first_name" in Contact.pii_fields()
    rows = [
        {"contact_id": "C1", "email": SECRET_EMAIL},
        {"contact_id": "C2", "mobile": SECRET_PHONE, "country": "DE"},
        # a list where a name belongs: pydantic rejects it, without echoing the input
        {"contact_id": "C3", "first_name": [SECRET_NAME]},
    ]
    good, bad = mapping.apply_batch(rows)
    assert good == []
    assert [e.field for _, e in bad] == ["email", "mobile", "first_name"]
    for _, err in bad:
        assert isinstance(err, RecordError)
        text = _all_text(err)
        assert SECRET_EMAIL not in text
        assert "876" not in text
        assert SECRET_NAME not in text


def test_non_personal_values_are_shown_to_help_fix_the_data():
    mapping = compile_mapping("csv.lead")
    with pytest.raises(MappingError) as info:
        mapping.apply({"lead_id": "L1", "annual_revenue": "12,5"})
    assert "'12,5'" in info.value.user_message
    assert "annual_revenue" not in Lead.pii_fields()
