"""HubSpot webhook bodies → push items, and reads by id (batch read) against the local fake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connectors.base import FetchById, PushParser
from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.hubspot.connector import iso_ms
from connectors.hubspot.events import parse_events
from junction.core.errors import ParseError
from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake
from tests.fakes.server import serve_app

T0 = 1_772_355_600_000


def _event(event_id: int, kind: str, object_id: int | None = 1246965, **extra) -> dict:
    event = {
        "eventId": event_id,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "changeSource": "CRM_UI",
        **extra,
    }
    if object_id is not None:
        event["objectId"] = object_id
    return event


def _body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


def test_a_batch_of_events_becomes_items_in_order():
    body = _body(
        _event(
            3816279340,
            "contact.propertyChange",
            1246965,
            propertyName="lifecyclestage",
            propertyValue="subscriber",
        ),
        _event(3816279480, "contact.creation", 1246978),
        _event(
            3816279481,
            "company.propertyChange",
            9001,
            propertyName="passport_number",
            propertyValue="REDACTED",
        ),
        _event(3816279482, "deal.deletion", 6744192456),
        _event(3816279483, "contact.merge", 1246965, mergedObjectIds=[1246978]),
    )
    items = parse_events(body)
    assert [(i.event_id, i.stream, i.fetch_id) for i in items] == [
        ("3816279340", "contacts", "1246965"),
        ("3816279480", "contacts", "1246978"),
        ("3816279481", "companies", "9001"),
        ("3816279482", "deals", "6744192456"),
        ("3816279483", "contacts", "1246965"),
    ]
    assert all(i.version is None and i.record is None for i in items)


def test_generic_object_events_and_association_changes():
    body = _body(
        _event(1, "object.propertyChange", 55, objectTypeId="0-3"),
        _event(2, "object.creation", 56, objectTypeId="0-5"),  # tickets: not read here
        _event(3, "contact.associationChange", None, fromObjectId=77, toObjectId=88),
    )
    assert [(i.event_id, i.stream, i.fetch_id) for i in parse_events(body)] == [
        ("1", "deals", "55"),
        ("3", "contacts", "77"),
    ]


def test_unknown_subscription_types_are_skipped():
    body = _body(
        _event(1, "ticket.creation", 5),
        _event(2, "conversation.newMessage", 6),
        _event(3, "contact.creation", 7),
    )
    assert [i.event_id for i in parse_events(body)] == ["3"]


def test_redelivered_event_keeps_its_event_id():
    first = parse_events(_body(_event(42, "contact.creation", 7)))
    again = parse_events(_body(_event(42, "contact.creation", 7, attemptNumber=3)))
    assert first[0].event_id == again[0].event_id == "42"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b'{"eventId": 1}',
        b"[1, 2]",
        _body({"subscriptionType": "contact.creation", "objectId": 1}),
        _body(_event(True, "contact.creation")),
        _body({**_event(1, "contact.creation"), "eventId": "12ab"}),
        _body(_event(1, "contact.creation", None)),
        _body({**_event(1, "contact.creation"), "objectId": 1.5}),
        _body({**_event(1, "contact.creation"), "subscriptionType": None}),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "object",
        "numbers",
        "no-event-id",
        "bool-id",
        "text-id",
        "no-object-id",
        "float-object-id",
        "no-type",
    ],
)
def test_malformed_bodies_are_parse_errors(body):
    with pytest.raises(ParseError):
        parse_events(body)


def test_an_empty_array_is_no_items():
    assert parse_events(b"[]") == []


@pytest.fixture
def fake() -> HubSpotFake:
    return HubSpotFake()


@pytest.fixture
def conn(fake: HubSpotFake) -> Iterator[HubSpotConnector]:
    with serve_app(fake.app) as url:
        c = HubSpotConnector(
            HubSpotConfig(
                base_url=url, access_token=PRIVATE_TOKEN, properties={"contacts": ["email"]}
            )
        )
        yield c
        c.close()


def test_connector_is_a_push_parser_and_fetcher(conn):
    assert isinstance(conn, PushParser)
    assert isinstance(conn, FetchById)
    items = conn.parse_push(_body(_event(9, "deal.creation", 3)), {})
    assert items[0].stream == "deals"
    assert conn.push_ack(items) is None


def test_fetch_reads_current_state_and_leaves_out_missing_ids(fake, conn):
    a = fake.put("contacts", updated=T0, email="a@x.io")
    b = fake.put("contacts", updated=T0 + 5, email="b@x.io")
    ids = [b, "999999", a, b]
    batch = conn.fetch("contacts", ids)
    assert batch.stream == "contacts"
    assert [r["id"] for r in batch.records] == [b, a]
    assert batch.keys == [f"{b}@{iso_ms(T0 + 5)}", f"{a}@{iso_ms(T0)}"]
    assert batch.versions == [iso_ms(T0 + 5), iso_ms(T0)]
    assert batch.positions == [0, 2]  # the index of each record's id in the request
    assert batch.records[0]["properties"]["email"] == "b@x.io"
    kind, sent = fake.batch_bodies[-1]
    assert kind == "read"
    assert sent["inputs"] == [{"id": b}, {"id": "999999"}, {"id": a}]
    assert sent["properties"] == ["email", "hs_object_id", "lastmodifieddate"]


def test_fetch_after_a_change_sees_the_new_version(fake, conn):
    rid = fake.put("contacts", updated=T0, email="a@x.io")
    fake.touch("contacts", rid, updated=T0 + 60_000, email="new@x.io")
    batch = conn.fetch("contacts", [rid])
    assert batch.keys == [f"{rid}@{iso_ms(T0 + 60_000)}"]
    assert batch.records[0]["properties"]["email"] == "new@x.io"


def test_fetch_splits_more_than_100_ids(fake, conn):
    ids = [fake.put("contacts", updated=T0 + i) for i in range(150)]
    batch = conn.fetch("contacts", ids)
    assert [r["id"] for r in batch.records] == ids
    sizes = [len(body["inputs"]) for kind, body in fake.batch_bodies if kind == "read"]
    assert sizes == [100, 50]


def test_fetch_of_only_deleted_ids_is_empty(fake, conn):
    rid = fake.put("contacts", updated=T0)
    fake.delete("contacts", rid)
    batch = conn.fetch("contacts", [rid])
    assert batch.records == []
    assert batch.keys == []


def test_fetched_records_map_to_canonical_leads_and_contacts(fake, conn):
    from mappings import compile_mapping

    rid = fake.put(
        "contacts",
        updated=T0,
        email="Ann@Example.com",
        firstname="Ann",
        phone="(415) 555-0132",
        country="US",
        hs_analytics_num_page_views="7",
        lifecyclestage="lead",
    )
    full = HubSpotConnector(conn.config.model_copy(update={"properties": {}}))
    record = full.fetch("contacts", [rid]).records[0]
    full.close()
    lead = compile_mapping("hubspot.lead").apply(record)
    assert (lead.external_id, lead.email, lead.phone) == (rid, "ann@example.com", "+14155550132")
    assert lead.page_views == 7
    assert lead.status == "lead"
    assert lead.updated_at is not None
    assert iso_ms(int(lead.updated_at.timestamp() * 1000)) == iso_ms(T0)
    contact = compile_mapping("hubspot.contact").apply(record)
    assert contact.external_id == rid
