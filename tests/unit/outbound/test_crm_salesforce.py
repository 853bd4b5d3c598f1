"""Salesforce write-back through sObject Collections, against the fake org and the real SDK."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from connectors.salesforce.config import SalesforceConnection
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RateLimitedError,
    RetryableError,
    UnavailableError,
)
from outbound.base import Delivery
from outbound.crm import CrmWriteBackChannel, CrmWriteBackConfig
from outbound.crm.base import WriteBack
from outbound.crm.salesforce import SalesforceWriteBackend
from tests.fakes.salesforce import FakeOrg, options_for
from tests.fakes.salesforce_data import contact_fields, lead_fields


@pytest.fixture
def org():
    org = FakeOrg()
    for i in range(5):
        org.insert("Lead", lead_fields(i))
    org.insert("Contact", contact_fields(0))
    return org


def backend(org, url, match="id", **extra) -> SalesforceWriteBackend:
    options = SalesforceConnection.model_validate(options_for(org, url, "oauth_password", **extra))
    return SalesforceWriteBackend(options, match=match)


def wb(n: int, target: str, obj: str = "Lead", **fields):
    return WriteBack(f"d{n}", obj, target, fields or {"Score__c": 87.5})


def test_update_by_id_with_a_partial_failure(org, url):
    ids = list(org.records["Lead"])
    before = org.records["Lead"][ids[1]]["SystemModstamp"]
    org.delete("Lead", ids[2])
    b = backend(org, url)
    results = b.write(
        [
            wb(0, ids[0], Score__c=91.0, Status="Working - Contacted"),
            wb(1, f"{ids[1]}@2026-03-01T12:00:02.000Z", Score__c=12.5),  # a hub source key
            wb(2, ids[2]),  # deleted
            wb(3, "not-an-id"),
        ]
    )
    b.close()
    b.close()
    assert [r.remote_id for r in results[:2]] == ids[:2]
    assert results[0].error is None
    assert results[1].error is None
    assert isinstance(results[2].error, FatalError)
    assert results[2].error.context["status_code"] == "ENTITY_IS_DELETED"
    assert isinstance(results[3].error, FatalError)
    assert org.records["Lead"][ids[0]]["Score__c"] == 91.0
    assert org.records["Lead"][ids[0]]["Status"] == "Working - Contacted"
    assert org.records["Lead"][ids[1]]["Score__c"] == 12.5
    assert org.records["Lead"][ids[1]]["SystemModstamp"] > before
    # one collections call for the three well-formed rows
    assert [p for m, p in org.requests if m == "PATCH"] == [
        "/services/data/v59.0/composite/sobjects"
    ]


def test_upsert_by_external_id_creates_updates_and_fails_per_row(org, url):
    b = backend(org, url, match="external_id:External_Id__c")
    results = b.write(
        [
            wb(0, "EXT-00001", Score__c=70.0),  # exists
            wb(1, "NEW-1", LastName="Okafor", Company="Initech", Score__c=40.0),  # created
            wb(2, "EXT-00003", Email="not-an-email"),  # validation error
        ]
    )
    b.close()
    existing = next(r for r in org.records["Lead"].values() if r["External_Id__c"] == "EXT-00001")
    created = next(r for r in org.records["Lead"].values() if r["External_Id__c"] == "NEW-1")
    assert results[0].remote_id == existing["Id"]
    assert results[0].detail == {"created": False}
    assert existing["Score__c"] == 70.0
    assert results[1].remote_id == created["Id"]
    assert results[1].detail == {"created": True}
    assert created["Company"] == "Initech"
    assert isinstance(results[2].error, FatalError)
    assert "not-an-email" not in results[2].error.user_message
    assert ("PATCH", "/services/data/v59.0/composite/sobjects/Lead/External_Id__c") in org.requests


def test_upsert_groups_object_types_and_keeps_item_order(org, url):
    b = backend(org, url, match="external_id:External_Id__c")
    results = b.write(
        [
            wb(0, "EXT-00000", Score__c=1.0),
            wb(1, "C-00000", obj="Contact", Title="CFO"),
            wb(2, "EXT-00004", Score__c=2.0),
        ]
    )
    b.close()
    assert all(r.error is None for r in results)
    contact = next(iter(org.records["Contact"].values()))
    assert results[1].remote_id == contact["Id"]
    assert contact["Title"] == "CFO"
    patches = [p for m, p in org.requests if m == "PATCH"]
    assert sorted(patches) == [
        "/services/data/v59.0/composite/sobjects/Contact/External_Id__c",
        "/services/data/v59.0/composite/sobjects/Lead/External_Id__c",
    ]


def test_more_than_200_items_go_in_several_calls(org, url):
    b = backend(org, url, match="external_id:External_Id__c")
    results = b.write([wb(i, f"BULK-{i}", LastName=f"L{i}", Company="Globex") for i in range(250)])
    b.close()
    assert all(r.error is None and r.detail == {"created": True} for r in results)
    assert len([1 for m, _p in org.requests if m == "PATCH"]) == 2
    assert len(org.records["Lead"]) == 255


def test_retryable_row_errors(org, url):
    ids = list(org.records["Lead"])
    org.fail_rows[ids[0]] = "UNABLE_TO_LOCK_ROW"
    org.fail_rows[ids[1]] = "REQUEST_LIMIT_EXCEEDED"
    b = backend(org, url)
    results = b.write([wb(0, ids[0]), wb(1, ids[1]), wb(2, ids[2])])
    b.close()
    assert type(results[0].error) is RetryableError
    assert isinstance(results[1].error, RateLimitedError)
    assert results[2].error is None


@pytest.mark.parametrize(
    ("kind", "error"),
    [("rate_limit", RateLimitedError), ("server_error", UnavailableError)],
)
def test_whole_call_failures_raise_typed_errors(org, url, kind, error):
    ids = list(org.records["Lead"])
    b = backend(org, url)
    b.write([wb(0, ids[0])])  # logged in
    org.faults.fail_next(kind, 1, path_contains="/composite/")
    with pytest.raises(error) as info:
        b.write([wb(1, ids[1])])
    b.close()
    if kind == "rate_limit":
        assert info.value.retry_after == 7.0


def test_bad_credentials_raise_auth_error(org, url):
    b = backend(org, url, password="wrong")
    with pytest.raises(AuthError):
        b.write([wb(0, next(iter(org.records["Lead"])))])
    b.close()


def test_session_expiry_relogs_in(org, url):
    ids = list(org.records["Lead"])
    b = backend(org, url)
    b.write([wb(0, ids[0])])
    org.revoke_tokens()
    assert b.write([wb(1, ids[1])])[0].error is None
    b.close()
    assert org.logins == ["password", "password"]


@pytest.mark.parametrize("match", ["name", "external_id:", "external_id:Bad Field", "external:X"])
def test_match_is_validated(org, url, match):
    with pytest.raises(ConfigError):
        backend(org, url, match=match)


def test_options_model_is_the_connection_model():
    assert SalesforceWriteBackend.options_model is SalesforceConnection
    assert SalesforceWriteBackend.max_batch == 200
    assert SalesforceWriteBackend.system == "salesforce"
    with pytest.raises(ValidationError):
        SalesforceConnection.model_validate(
            {"auth": "session", "session_id": "t", "instance_url": "https://x", "objects": []}
        )


def test_decimal_and_date_values_are_sent_as_json_others_fail_their_item(org, url):
    ids = list(org.records["Lead"])
    b = backend(org, url)
    results = b.write(
        [
            wb(0, ids[0], Score__c=Decimal("87.25"), Title=date(2026, 3, 1)),
            wb(1, ids[1], Score__c=object()),
        ]
    )
    b.close()
    assert results[0].error is None
    assert org.records["Lead"][ids[0]]["Score__c"] == 87.25
    assert org.records["Lead"][ids[0]]["Title"] == "2026-03-01"
    assert isinstance(results[1].error, FatalError)


def test_the_crm_channel_batches_deliveries_into_one_collections_call(org, url):
    ids = list(org.records["Lead"])
    config = CrmWriteBackConfig.model_validate(
        {
            "system": "salesforce",
            "connection": options_for(org, url, "client_credentials"),
            "object": "Lead",
            "fields": {"score.value_pct": "Score__c", "score.grade": "Status"},
        }
    )

    def delivery(i: int, target: str) -> Delivery:
        event = {
            "type": "lead.scored",
            "source_key": f"{target}@2026-03-01T12:00:00.000Z",
            "score": {"value": 0.8765, "grade": "A", "top_factors": [], "model_version": "v1"},
        }
        return Delivery(f"d{i}", "crm.sf", "lead.scored", orjson.dumps(event))

    async def run():
        channel = CrmWriteBackChannel(config)
        try:
            return await asyncio.gather(
                *(channel.send(delivery(i, rid)) for i, rid in enumerate(ids[:3])),
                channel.send(delivery(9, "00Q5g00000ZZZZZEAA")),
                return_exceptions=True,
            )
        finally:
            await channel.aclose()

    outcomes = asyncio.run(run())
    assert [o.remote_id for o in outcomes[:3]] == ids[:3]
    assert isinstance(outcomes[3], FatalError)  # that Lead does not exist
    assert [org.records["Lead"][r]["Score__c"] for r in ids[:3]] == [88, 88, 88]
    assert len([1 for m, _p in org.requests if m == "PATCH"]) == 1
