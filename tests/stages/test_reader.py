"""The one-pass reader of canonical and scored stage messages gives what ``decode`` plus the
role's model check give, and leaves every message it cannot take to them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from junction.core.errors import RecordError
from junction.pipeline.stages.reader import MessageReader
from junction.pipeline.stages.topics import Item, Source, decode
from schemas.contact import Contact
from schemas.lead import Lead
from tests.stages.support import NOT_STAGE_MESSAGES

SRC = Source("p.canonical.lead.v1", 2, 17, b"")
LEAD = {
    "schema_version": "lead.v1",
    "external_id": "L1",
    "first_name": "  Ann ",  # the model strips it
    "last_name": "Lee",
    "email": "ann.lee@example.com",
    "phone": "+4930123456",
    "country": "DE",
    "employees": 12,
    "annual_revenue": "1250000.50",
    "page_views": 0,
    "created_at": "2025-04-17T10:11:12+02:00",
    "updated_at": 1767225600,  # an epoch: the model turns it into a datetime
}
ENVELOPE: dict[str, Any] = {
    "pipeline": "leads",
    "record_id": "leads:L1@0002",
    "key": "L1@0002",
    "stream": "inbox/a.csv",
    "position": 7,
    "version": "0002",
    "provenance": {"connector": "csv_file", "file": "a.csv"},
    "source_key": "L1",
    "entity": "lead",
    "schema_version": "lead.v1",
    "record": LEAD,
}
SCORE = {"value": 0.71, "grade": "B", "top_factors": [["visits", 0.2]], "model_version": "v3"}


def _slow(value: bytes | None, stage: str, model_cls: Any = Lead) -> Item:
    """``decode``, then what ``PipelineStages._models`` does to a consumed record."""
    item = decode(value, stage, SRC)
    item.model = model_cls.model_validate(item.record)
    item.body = model_cls.__pydantic_serializer__.to_json(item.model, exclude_none=True)
    item.record = None
    return item


def _fields(item: Item) -> tuple[Any, ...]:
    return (
        item.pipeline,
        item.record_id,
        item.key,
        item.stream,
        item.position,
        item.version,
        item.provenance,
        item.record,
        item.body,
        item.source_key,
        item.entity,
        item.schema_version,
        item.score,
        item.model,
        item.src,
        item.extra,
    )


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("canonical", ENVELOPE),
        ("canonical", {**ENVELOPE, "version": None}),
        ("canonical", {k: v for k, v in ENVELOPE.items() if k not in ("version", "provenance")}),
        ("canonical", {k: v for k, v in ENVELOPE.items() if k != "source_key"}),
        ("canonical", {**ENVELOPE, "entity": None, "schema_version": None}),
        ("canonical", {**ENVELOPE, "something_new": [1, 2]}),  # an unknown envelope field
        ("canonical", {**ENVELOPE, "record": {"schema_version": "lead.v1"}}),
        ("scored", {**ENVELOPE, "type": "lead.scored", "score": SCORE}),
        ("scored", {**ENVELOPE, "type": "lead.scored", "score": None}),
        ("scored", ENVELOPE),  # a scored message without its score
    ],
)
def test_a_clean_message_reads_as_decode_and_the_model_check_read_it(
    stage: str, message: dict[str, Any]
) -> None:
    value = orjson.dumps(message)
    fast = MessageReader(stage, Lead)(value, SRC)
    assert fast.model is not None  # taken in one pass, not handed on
    assert _fields(fast) == _fields(_slow(value, stage))


def test_the_body_is_the_models_own_serialization() -> None:
    item = MessageReader("canonical", Lead)(orjson.dumps(ENVELOPE), SRC)
    body = orjson.loads(item.body or b"")
    assert body["first_name"] == "Ann"
    assert body["updated_at"] == "2026-01-01T00:00:00Z"
    assert "company" not in body  # none left out, as normalize writes records


@pytest.mark.parametrize(
    "message",
    [
        {**ENVELOPE, "provenance": None},  # decode reads it as {}
        {**ENVELOPE, "version": 2},  # decode reads a non-string version as none
        {**ENVELOPE, "source_key": None},  # decode falls back to the key
        {**ENVELOPE, "entity": 5},
        {**ENVELOPE, "position": True},  # decode refuses a bool
        {**ENVELOPE, "record": {**LEAD, "employees": "many"}},  # the model refuses it
        {**ENVELOPE, "record": {**LEAD, "favourite_colour": "green"}},
        {**ENVELOPE, "pipeline": "a", "record": []},
    ],
)
def test_what_it_cannot_take_goes_to_decode_as_before(message: dict[str, Any]) -> None:
    value = orjson.dumps(message)
    reader = MessageReader("canonical", Lead)
    try:
        expected: Item | RecordError = decode(value, "canonical", SRC)
    except RecordError as exc:
        expected = exc
    if isinstance(expected, RecordError):
        with pytest.raises(RecordError) as info:
            reader(value, SRC)
        assert info.value.to_dict() == expected.to_dict()
        return
    got = reader(value, SRC)
    # the record stays a dict: the role validates it, and quarantines what the model refuses
    assert got.model is None
    assert _fields(got) == _fields(expected)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        *NOT_STAGE_MESSAGES,
        # orjson and the reader's parser both keep the last of a repeated key
        (
            b'{"pipeline": "a", "pipeline": 5, "record_id": "r", "key": "k", "stream": "s",'
            b' "position": 1, "record": {}}',
            "'pipeline' is not a string",
        ),
    ],
)
def test_bad_messages_fail_with_decodes_own_error(value: bytes | None, needle: str) -> None:
    with pytest.raises(RecordError, match=needle) as info:
        MessageReader("canonical", Lead)(value, SRC)
    assert info.value.code == "stage_message"


def test_the_reader_validates_with_its_own_model() -> None:
    with pytest.raises(ValidationError):  # a lead's record is no contact
        Contact.model_validate(LEAD)
    got = MessageReader("canonical", Contact)(orjson.dumps(ENVELOPE), SRC)
    assert got.model is None  # handed on, for the role to refuse
    assert got.record == LEAD


def test_only_record_stages_have_a_reader() -> None:
    with pytest.raises(ValueError, match="no canonical record"):
        MessageReader("raw", Lead)
