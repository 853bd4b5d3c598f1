"""The Salesforce Outbound Message verifier: organization id (and action id) on the raw body."""

from __future__ import annotations

from typing import Any

import pytest

from junction.api.verifiers import (
    SignatureError,
    SignedRequest,
    VerifierSettings,
    default_verifiers,
)
from junction.api.verifiers.salesforce import SalesforceOutboundVerifier
from junction.core.errors import ConfigError

ORG18 = "00D5g000004ABCDEAA"
ORG15 = ORG18[:15]
ACTION = "04k5g000000AbCdAAK"


def body(org: str | None = ORG18, action: str = ACTION, prolog: str = "") -> bytes:
    org_el = f"<OrganizationId>{org}</OrganizationId>" if org is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        + prolog
        + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"{org_el}<ActionId>{action}</ActionId><Notification><Id>04l1</Id>"
        '<sObject xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="sf:Lead" '
        'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>00Q5g00000AbCdEEAV</sf:Id>'
        "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def verifier(**options: Any):
    return default_verifiers.build(
        "salesforce_outbound", VerifierSettings("sfdc", None, options=options)
    )


def request(data: bytes) -> SignedRequest:
    return SignedRequest(
        "POST", "https://hub.example/hooks/sfdc", {"content-type": "text/xml"}, data
    )


def test_registered_under_its_name():
    assert default_verifiers.get("salesforce_outbound") is SalesforceOutboundVerifier


@pytest.mark.parametrize("configured", [ORG18, ORG15], ids=["18", "15"])
@pytest.mark.parametrize("sent", [ORG18, ORG15], ids=["sent18", "sent15"])
def test_the_configured_org_is_accepted_in_either_id_form(configured, sent):
    result = verifier(organization_id=configured).verify(request(body(sent)), now=0)
    assert result.event_id is None


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("00D5g000004ABCEEAA", "organization_mismatch"),
        ("00D5g000004abcdEAA", "organization_mismatch"),  # ids are case-sensitive
        ("", "missing_organization_id"),
        (None, "missing_organization_id"),
        ("00D5g0", "missing_organization_id"),
    ],
    ids=["other-org", "case-differs", "empty", "absent", "malformed"],
)
def test_other_or_missing_orgs_are_refused(sent, reason):
    with pytest.raises(SignatureError) as info:
        verifier(organization_id=ORG18).verify(request(body(sent)), now=0)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "data",
    [
        body(prolog='<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'),
        b"<not-xml",
        b'{"OrganizationId": "00D5g000004ABCDEAA"}',
    ],
    ids=["dtd", "broken", "json"],
)
def test_unreadable_bodies_are_refused_as_signature_errors(data):
    with pytest.raises(SignatureError) as info:
        verifier(organization_id=ORG18).verify(request(data), now=0)
    assert info.value.reason == "unreadable_body"


def test_action_allow_list():
    v = verifier(organization_id=ORG18, action_ids=[ACTION[:15]])
    assert v.verify(request(body()), now=0).event_id is None
    with pytest.raises(SignatureError) as info:
        v.verify(request(body(action="04k5g000000ZzZzAAK")), now=0)
    assert info.value.reason == "action_not_allowed"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"organization_id": "acme"},
        {"organization_id": ORG18, "action_ids": ["x"]},
        {"organization_id": ORG18, "secret": "x"},
    ],
    ids=["missing", "not-an-id", "bad-action", "unknown-option"],
)
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        verifier(**options)
