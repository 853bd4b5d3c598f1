"""Salesforce Outbound Message parsing (SOAP push) and the SOAP acknowledgement."""

from __future__ import annotations

import pytest
from lxml import etree

from connectors.base import Capability, PushParser
from connectors.salesforce import SalesforceConfig, SalesforceConnector
from connectors.salesforce.outbound_message import normalize_stamp, parse_notifications, to18
from junction.core.errors import DTDForbiddenError, ParseError

ORG = "00D5g000004ABCDEAA"


def lead_notification(notif_id: str, lead_id: str, *, stamp: str | None, **fields: str) -> str:
    values = {
        "Id": lead_id,
        "FirstName": "Henrik",
        "LastName": "Nielsen",
        "Company": "Globex",
        "Email": "henrik@globex.example",
        **fields,
    }
    if stamp:
        values["SystemModstamp"] = stamp
    body = "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in values.items())
    return (
        f"<Notification><Id>{notif_id}</Id>"
        f'<sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{body}</sObject></Notification>"
    )


def message(*notifications: str, org: str = ORG, prolog: str = "") -> bytes:
    return (
        '\ufeff<?xml version="1.0" encoding="UTF-8"?>'
        + prolog
        + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5g000000AbCdAAK</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D5g000004ABCD"
        "</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g000004ABCD"
        "</PartnerUrl>" + "".join(notifications) + "</notifications></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode("utf-8")


def test_two_lead_notifications_become_two_items():
    body = message(
        lead_notification(
            "04l5g000000fztEQAQ",
            "00Q5g00000AbCdEEAV",
            stamp="2026-03-01T12:00:05.000Z",
            City="Redmond",
        ),
        lead_notification(
            "04l5g000000fzt9QAA", "00Q5g00000AbCdFEAV", stamp="2026-03-01T12:00:07.123Z"
        ),
    )
    items = parse_notifications(body)
    assert [i.event_id for i in items] == ["04l5g000000fztEQAQ", "04l5g000000fzt9QAA"]
    first = items[0]
    assert first.stream == "Lead"
    assert first.record == {
        "attributes": {"type": "Lead"},
        "Id": "00Q5g00000AbCdEEAV",
        "FirstName": "Henrik",
        "LastName": "Nielsen",
        "Company": "Globex",
        "Email": "henrik@globex.example",
        "City": "Redmond",
        "SystemModstamp": "2026-03-01T12:00:05.000Z",
    }
    assert first.version == "2026-03-01T12:00:05.000Z"
    assert first.key == "00Q5g00000AbCdEEAV@2026-03-01T12:00:05.000Z"
    assert items[1].version == "2026-03-01T12:00:07.123Z"


def test_without_system_modstamp_the_key_uses_the_notification_id():
    items = parse_notifications(message(lead_notification("04l1", "00Q5g00000AbCdE", stamp=None)))
    assert items[0].version is None
    # the 15-character id is keyed in its 18-character form
    assert items[0].key == f"{to18('00Q5g00000AbCdE')}@04l1"
    assert items[0].record["Id"] == "00Q5g00000AbCdE"


def test_contact_namespaces_prefixes_and_nil_fields():
    body = (
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        b'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><e:Body>'
        b'<o:notifications xmlns:o="http://soap.sforce.com/2005/09/outbound">'
        b"<o:OrganizationId>00D5g000004ABCD</o:OrganizationId>"
        b"<o:Notification><o:Id>04l9</o:Id>"
        b'<o:sObject i:type="q:Contact" xmlns:q="urn:sobject.enterprise.soap.sforce.com">'
        b'<q:Id>0035g00000XyZaBAAV</q:Id><q:Email i:nil="true"/>'
        b"<q:SystemModstamp>2026-03-01T13:00:00.000+01:00</q:SystemModstamp>"
        b"</o:sObject></o:Notification></o:notifications></e:Body></e:Envelope>"
    )
    (item,) = parse_notifications(body)
    assert item.stream == "Contact"
    assert item.record is not None
    assert item.record["Email"] is None
    assert item.version == "2026-03-01T12:00:00.000Z"


def test_empty_notifications_is_no_items():
    assert parse_notifications(message()) == []


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
        '<!DOCTYPE Envelope SYSTEM "http://127.0.0.1:1/x.dtd">',
    ],
    ids=["xxe", "entity-expansion", "external-dtd"],
)
def test_dtds_and_entities_are_refused(prolog):
    with pytest.raises(DTDForbiddenError):
        parse_notifications(
            message(lead_notification("04l1", "00Q5g00000AbCdE", stamp=None), prolog=prolog)
        )


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b"<Envelope/>",
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>',
        message("<Notification><Id>04l1</Id></Notification>"),
        message(lead_notification("04l1", "00Q5g00000AbCdE", stamp="yesterday")),
        message(*[lead_notification(f"04l{i}", "00Q5g00000AbCdE", stamp=None) for i in range(101)]),
    ],
    ids=["not-xml", "not-soap", "no-notifications", "no-sobject", "bad-stamp", "over-100"],
)
def test_unreadable_messages_are_parse_errors(body):
    with pytest.raises(ParseError):
        parse_notifications(body)


def test_connector_is_a_push_parser_with_a_soap_ack():
    config = SalesforceConfig.model_validate(
        {"auth": "session", "session_id": "t", "instance_url": "https://acme.my.salesforce.com"}
    )
    conn = SalesforceConnector(config)
    assert Capability.PUSH in conn.capabilities
    assert isinstance(conn, PushParser)
    items = conn.parse_push(message(lead_notification("04l1", "00Q5g00000AbCdE", stamp=None)), {})
    answer = conn.push_ack(items)
    conn.close()
    assert answer is not None
    assert answer.media_type.startswith("text/xml")
    root = etree.fromstring(answer.body)
    acks = root.findall(".//{http://soap.sforce.com/2005/09/outbound}Ack")
    assert [a.text for a in acks] == ["true"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        ("001A0000006Vm9rIAC", "001A0000006Vm9rIAC"),
        ("0123456789ABCDE", "0123456789ABCDEAA5"),
        ("00D5g000004abcd", "00D5g000004abcdEAA"),
    ],
)
def test_to18(given, expected):
    assert to18(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2022-01-02T15:41:15.000+0000", "2022-01-02T15:41:15.000Z"),
        ("2022-01-02T15:41:15Z", "2022-01-02T15:41:15.000Z"),
        ("2022-01-02T17:41:15.5+02:00", "2022-01-02T15:41:15.500Z"),
    ],
)
def test_normalize_stamp(given, expected):
    assert normalize_stamp(given) == expected


def test_push_fetch_names_the_records_instead():
    config = SalesforceConfig.model_validate(
        {
            "auth": "session",
            "session_id": "t",
            "instance_url": "https://acme.my.salesforce.com",
            "push_fetch": True,
        }
    )
    conn = SalesforceConnector(config)
    items = conn.parse_push(
        message(
            lead_notification("04l1", "00Q5g00000AbCdEEAV", stamp="2026-03-01T12:00:05.000Z"),
            lead_notification("04l2", "00Q5g00000AbCdF", stamp=None),
        ),
        {},
    )
    conn.close()
    assert [(i.event_id, i.stream, i.fetch_id, i.record) for i in items] == [
        ("04l1", "Lead", "00Q5g00000AbCdEEAV", None),
        ("04l2", "Lead", "00Q5g00000AbCdF", None),
    ]
