"""Fuzz the inbound push parsers: HubSpot events, Salesforce Outbound Messages, the fake
connector's events and SendGrid's event webhook.  Any body gives items or a ``ParseError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import PushItem
from connectors.fake import FakeConnector
from connectors.hubspot.events import parse_events as hubspot_events
from connectors.salesforce.outbound_message import parse_notifications
from junction.api.sendgrid_events import parse_events as sendgrid_events
from junction.api.sendgrid_events import provider_event
from junction.core.errors import JunctionError
from tests.fuzz.support import JSON_VALUES, SCALARS, fuzz_settings

pytestmark = pytest.mark.fuzz

HUBSPOT_KEYS = st.sampled_from(
    [
        "eventId",
        "subscriptionType",
        "objectId",
        "fromObjectId",
        "portalId",
        "occurredAt",
        "propertyName",
        "propertyValue",
        "changeSource",
        "objectTypeId",
    ]
)
HUBSPOT_VALUES = st.one_of(
    SCALARS,
    st.sampled_from(
        [
            "contact.creation",
            "company.propertyChange",
            "deal.deletion",
            "contact.associationChange",
            "object.creation",
            "0-1",
            "0-2",
            "0-3",
        ]
    ),
)
SENDGRID_KEYS = st.sampled_from(
    [
        "email",
        "event",
        "sg_event_id",
        "sg_message_id",
        "timestamp",
        "type",
        "reason",
        "delivery_id",
        "status",
    ]
)
SENDGRID_VALUES = st.one_of(
    SCALARS,
    st.sampled_from(
        [
            "bounce",
            "dropped",
            "spamreport",
            "unsubscribe",
            "delivered",
            "open",
            "blocked",
            "a@b.example",
            "A@B.EXAMPLE ",
            "x@",
            "id.filter0001",
        ]
    ),
)


def json_array(keys: st.SearchStrategy[str], values: st.SearchStrategy[Any]) -> Any:
    events = st.lists(st.one_of(st.dictionaries(keys, values, max_size=8), JSON_VALUES), max_size=4)
    return st.one_of(
        events.map(lambda e: json.dumps(e, allow_nan=True).encode()),
        JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode()),
        st.binary(max_size=200),
    )


OM_FIELD = st.sampled_from(["Id", "LastName", "Email", "SystemModstamp", "Company", "x:y"])
OM_TEXT = st.one_of(
    st.text(st.sampled_from(list("ab01Z<&;: -T.")), max_size=20),
    st.sampled_from(
        [
            "2026-03-01T10:00:00.000Z",
            "00Q000000000001AAA",
            "00Q000000000001",
            "",
            "not-a-date",
            "2026-13-45T99:99:99Z",
        ]
    ),
)


@st.composite
def outbound_message(draw: st.DrawFn) -> bytes:
    notifications = []
    for _ in range(draw(st.integers(0, 3))):
        fields = "".join(
            f"<sf:{draw(OM_FIELD)}>{draw(OM_TEXT)}</sf:{draw(OM_FIELD)}>"
            if draw(st.integers(0, 10)) == 0
            else (lambda f: f"<sf:{f}>{draw(OM_TEXT)}</sf:{f}>")(draw(OM_FIELD))
            for _ in range(draw(st.integers(0, 4)))
        )
        sobject_type = draw(st.sampled_from(["sf:Lead", "sf:Contact", "Lead", "", "sf:"]))
        ident = draw(OM_TEXT) if draw(st.booleans()) else "04l000000000001AAA"
        notifications.append(
            f"<Notification><Id>{ident}</Id>"
            '<sObject xmlns:sf="urn:sobject.enterprise.soap.sforce.com" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="{sobject_type}">'
            f"{fields}</sObject></Notification>"
        )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{draw(OM_TEXT)}</OrganizationId><ActionId>{draw(OM_TEXT)}</ActionId>"
        + "".join(notifications)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()
    if draw(st.integers(0, 4)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    return body


def fake_parse(body: bytes) -> list[PushItem]:
    return FakeConnector(FakeConnector.config_model(path="/nonexistent")).parse_push(body, {})


def sendgrid_parse(body: bytes) -> list[Any]:
    return [provider_event(event) for event in sendgrid_events(body)]


def check(parse: Callable[[bytes], list[Any]], body: bytes) -> None:
    """Items, or a Junction error; anything else propagates and fails the test."""
    try:
        items = parse(body)
    except JunctionError:
        return
    assert isinstance(items, list)
    for item in items:
        if isinstance(item, PushItem):
            assert isinstance(item.event_id, str)
            assert item.event_id


@fuzz_settings(max_examples=100)
@given(body=json_array(HUBSPOT_KEYS, HUBSPOT_VALUES))
def test_hubspot_events(body: bytes) -> None:
    check(hubspot_events, body)


@fuzz_settings(max_examples=100)
@given(body=st.one_of(outbound_message(), st.binary(max_size=200)))
def test_salesforce_outbound_messages(body: bytes) -> None:
    check(parse_notifications, body)


@fuzz_settings(max_examples=60)
@given(
    body=json_array(
        st.sampled_from(["eventId", "stream", "objectId", "record"]),
        st.one_of(SCALARS, st.dictionaries(st.sampled_from(["id", "updated_at"]), SCALARS)),
    )
)
def test_fake_connector_events(body: bytes) -> None:
    check(fake_parse, body)


@fuzz_settings(max_examples=100)
@given(body=json_array(SENDGRID_KEYS, SENDGRID_VALUES))
def test_sendgrid_events(body: bytes) -> None:
    check(sendgrid_parse, body)
