"""Stage topic names, role lists and the stage messages' wire format."""

from __future__ import annotations

import orjson
import pytest

from junction.core.errors import ConfigError, RecordError
from junction.pipeline.stages.topics import (
    Item,
    Source,
    decode,
    encode,
    parse_roles,
    subject_key,
    topic_name,
)
from tests.stages.support import NOT_STAGE_MESSAGES


def test_topic_names_and_subject_keys() -> None:
    assert topic_name("junction", "raw", "lead") == "junction.raw.lead.v1"
    # every version of one source record shares the key, so it shares a partition
    assert subject_key("crm", "0015g00000AbCdE@2026-01-02T03:04:05.000Z") == "crm:0015g00000AbCdE"
    assert subject_key("files", "9f3c2a:17") == "files:9f3c2a:17"


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("ingest", ("ingest",)),
        ("normalize", ("normalize",)),
        ("score,normalize", ("normalize", "score")),
        (" normalize , score , deliver ", ("normalize", "score", "deliver")),
        ("score,deliver", ("score", "deliver")),
    ],
)
def test_parse_roles(text: str, roles: tuple[str, ...]) -> None:
    assert parse_roles(text) == roles


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "at least one"),
        ("enrich", "unknown role 'enrich'"),
        ("score,score", "repeats"),
        ("normalize,deliver", "not contiguous"),
        ("ingest,normalize", "ingest runs alone"),
    ],
)
def test_parse_roles_refuses(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_roles(text)


def _item() -> Item:
    return Item(
        pipeline="leads",
        record_id="leads:L1@0002",
        key="L1@0002",
        stream="inbox/a.csv",
        position=7,
        version="0002",
        provenance={"connector": "csv_file", "file": "a.csv", "position": 7},
        record={"Email": "ann@example.com", "Company": "Acme"},
    )


SRC = Source("t.raw.lead.v1", 3, 41, b"")


def test_raw_message_round_trip() -> None:
    item = _item()
    back = decode(encode(item, "raw"), "raw", SRC)
    assert (back.pipeline, back.record_id, back.key, back.position, back.version) == (
        "leads",
        "leads:L1@0002",
        "L1@0002",
        7,
        "0002",
    )
    assert back.record == item.record
    assert back.provenance == item.provenance
    assert back.src == SRC
    assert back.subject == "leads:L1"


def test_scored_message_is_the_channel_event_plus_where_it_came_from() -> None:
    item = _item()
    item.body = b'{"email":"ann@example.com","schema_version":"1"}'
    item.source_key, item.entity, item.schema_version = "L1", "lead", "1"
    item.score = {"value": 0.7, "grade": "B", "model_version": "v3"}
    value = orjson.loads(encode(item, "scored"))
    assert value["type"] == "lead.scored"
    assert value["record"] == {"email": "ann@example.com", "schema_version": "1"}
    assert value["score"]["grade"] == "B"
    back = decode(encode(item, "scored"), "scored", SRC)
    # the record comes back as the dict a role validates (its JSON is then the model's own)
    assert back.body is None
    assert back.record == value["record"]
    assert back.score == item.score
    assert back.source_key == "L1"


def test_canonical_message_needs_the_record() -> None:
    with pytest.raises(RecordError):
        encode(_item(), "canonical")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        *NOT_STAGE_MESSAGES,
        (
            b'{"pipeline": 1, "record_id": "a", "key": "a", "stream": "s", "position": 1,'
            b' "record": {}}',
            "'pipeline' is not a string",
        ),
        (
            b'{"pipeline": "p", "record_id": "a", "key": "a", "stream": "s", "position": "1",'
            b' "record": {}}',
            "'position' is not an integer",
        ),
        (
            b'{"pipeline": "p", "record_id": "a", "key": "a", "stream": "s", "position": 1,'
            b' "record": []}',
            "'record' is not an object",
        ),
    ],
)
def test_decode_refuses_bad_messages(value: bytes | None, needle: str) -> None:
    with pytest.raises(RecordError, match=needle) as info:
        decode(value, "raw", SRC)
    assert info.value.code == "stage_message"
