"""HubSpot write-back: batch update by id (207 partial failures), upsert by a unique property."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from connectors.hubspot.client import HubSpotConnection
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RateLimitedError,
    RetryableError,
    UnavailableError,
)
from outbound.crm.base import WriteBack
from outbound.crm.channel import load_backend
from outbound.crm.hubspot import HubSpotWriteBackend, item_error, property_value
from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake
from tests.fakes.server import Faults

T0 = 1_772_355_600_000


@pytest.fixture
def fake() -> HubSpotFake:
    f = HubSpotFake(faults=Faults(retry_after_s=4.0))
    f.add_oauth_client("cid", "csecret", "rtoken")
    return f


def _backend(url: str, match: str = "id", **auth) -> HubSpotWriteBackend:
    options = HubSpotWriteBackend.options_model.model_validate(
        {"base_url": url, **(auth or {"access_token": PRIVATE_TOKEN})}
    )
    assert isinstance(options, HubSpotConnection)
    return HubSpotWriteBackend(options, match=match)


def _item(n: int, target: str, **fields) -> WriteBack:
    return WriteBack(f"d{n}", "contacts", target, fields or {"hs_lead_status": "OPEN"})


def test_the_channel_finds_the_backend():
    assert load_backend("hubspot") is HubSpotWriteBackend
    assert HubSpotWriteBackend.max_batch == 100
    assert HubSpotWriteBackend.system == "hubspot"


def test_batch_update_with_a_207_fails_only_the_missing_record(fake, url):
    a = fake.put("contacts", updated=T0, email="a@x.io")
    b = fake.put("contacts", updated=T0, email="b@x.io")
    backend = _backend(url)
    items = [
        _item(1, f"{a}@2026-03-01T09:00:00.000Z", hs_lead_status="OPEN"),  # a hub source key
        _item(2, "99999999", hs_lead_status="OPEN"),
        _item(3, b, hs_lead_status="IN_PROGRESS"),
    ]
    results = backend.write(items)
    backend.close()
    assert [r.remote_id for r in results] == [a, None, b]
    assert results[0].error is None
    assert results[2].error is None
    error = results[1].error
    assert isinstance(error, FatalError)
    assert error.context["category"] == "OBJECT_NOT_FOUND"
    assert results[1].detail == {"status": 207}
    assert fake.objects["contacts"][a].properties["hs_lead_status"] == "OPEN"
    assert fake.objects["contacts"][b].properties["hs_lead_status"] == "IN_PROGRESS"
    kind, body = fake.batch_bodies[-1]
    assert kind == "update"
    assert body["inputs"][1] == {"id": "99999999", "properties": {"hs_lead_status": "OPEN"}}


def test_values_are_written_as_hubspot_property_text(fake, url):
    rid = fake.put("contacts", updated=T0)
    backend = _backend(url)
    [result] = backend.write(
        [
            _item(
                1,
                rid,
                annualrevenue=Decimal("1250000.50"),
                hs_email_open=3,
                hs_lead_status=None,
                lifecyclestage="lead",
            )
        ]
    )
    backend.close()
    assert result.error is None
    props = fake.objects["contacts"][rid].properties
    assert props["annualrevenue"] == "1250000.50"
    assert props["hs_email_open"] == "3"
    assert props["hs_lead_status"] == ""  # None clears the property


def test_property_value_conversions():
    assert property_value(True) == "true"
    assert property_value(0.73) == "0.73"
    assert property_value(datetime(2026, 3, 1, 9, tzinfo=UTC)) == str(T0)
    assert property_value(date(2026, 3, 1)) == str(T0 - 9 * 3600 * 1000)
    assert property_value(["a", "b"]) == "a;b"
    with pytest.raises(TypeError):
        property_value({"nested": 1})


def test_items_that_cannot_be_written_fail_alone(fake, url):
    rid = fake.put("contacts", updated=T0)
    backend = _backend(url)
    results = backend.write(
        [
            _item(1, "not-an-id"),
            WriteBack("d2", "contacts", rid, {"bad field": "x"}),
            WriteBack("d3", "contacts", rid, {"hs_lead_status": {"a": 1}}),
            WriteBack("d4", "contacts/../x", rid, {"hs_lead_status": "OPEN"}),
            _item(5, rid),
        ]
    )
    backend.close()
    assert [type(r.error).__name__ for r in results[:4]] == ["FatalError"] * 4
    assert results[4].error is None
    assert len(fake.batch_bodies) == 1  # only the good item was sent


def test_a_record_named_twice_goes_out_in_two_calls_in_order(fake, url):
    rid = fake.put("contacts", updated=T0)
    backend = _backend(url)
    results = backend.write(
        [_item(1, rid, hs_lead_status="OPEN"), _item(2, rid, hs_lead_status="CONNECTED")]
    )
    backend.close()
    assert all(r.error is None for r in results)
    assert [len(b["inputs"]) for _k, b in fake.batch_bodies] == [1, 1]
    assert fake.objects["contacts"][rid].properties["hs_lead_status"] == "CONNECTED"


def test_more_than_100_items_are_split(fake, url):
    ids = [fake.put("contacts", updated=T0) for _ in range(130)]
    backend = _backend(url)
    results = backend.write([_item(i, rid) for i, rid in enumerate(ids)])
    backend.close()
    assert [r.remote_id for r in results] == ids
    assert [len(b["inputs"]) for _k, b in fake.batch_bodies] == [100, 30]


def test_upsert_by_email_updates_or_creates(fake, url):
    existing = fake.put("contacts", updated=T0, email="ann@example.com")
    backend = _backend(url, match="property:email")
    results = backend.write(
        [
            _item(1, "Ann@Example.com", hs_lead_status="OPEN"),
            _item(2, "new.person@example.com", hs_lead_status="NEW"),
        ]
    )
    backend.close()
    assert results[0].remote_id == existing
    assert results[0].detail == {"new": False}
    assert results[1].error is None
    assert results[1].detail == {"new": True}
    created = fake.objects["contacts"][results[1].remote_id]
    assert created.properties["email"] == "new.person@example.com"
    kind, body = fake.batch_bodies[-1]
    assert kind == "upsert"
    assert body["inputs"][0] == {
        "idProperty": "email",
        "id": "Ann@Example.com",
        "properties": {"hs_lead_status": "OPEN"},
    }


def test_upsert_through_oauth(fake, url):
    backend = _backend(
        url,
        match="property:email",
        client_id="cid",
        client_secret="csecret",
        refresh_token="rtoken",
    )
    [result] = backend.write([_item(1, "x@example.com")])
    backend.close()
    assert result.error is None
    assert fake.token_grants == 1


def test_whole_call_failures_raise_typed_errors(fake, url):
    rid = fake.put("contacts", updated=T0)
    backend = _backend(url)
    with pytest.raises(FatalError, match="VALIDATION_ERROR"):
        backend.write([_item(1, rid, no_such_property="x")])
    fake.faults.fail_next("rate_limit", 1)
    with pytest.raises(RateLimitedError) as info:
        backend.write([_item(1, rid)])
    assert info.value.retry_after == pytest.approx(4.0)
    fake.faults.fail_next("server_error", 1)
    with pytest.raises(UnavailableError):
        backend.write([_item(1, rid)])
    fake.faults.fail_next("expired_session", 1)
    with pytest.raises(AuthError):
        backend.write([_item(1, rid)])
    backend.close()
    backend.close()


def test_item_errors_are_classified_by_category():
    assert isinstance(item_error({"category": "OBJECT_NOT_FOUND"}), FatalError)
    assert isinstance(item_error({"category": "VALIDATION_ERROR"}), FatalError)
    busy = item_error({"category": "RATE_LIMITS", "message": "a@x.io was throttled"})
    assert isinstance(busy, RetryableError)
    assert "a@x.io" not in str(busy)


@pytest.mark.parametrize("match", ["email", "property:", "property:bad name", "external_id:X"])
def test_bad_match_is_a_config_error(url, match):
    with pytest.raises(ConfigError):
        _backend(url, match=match)


def test_options_are_the_connection_only(url):
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError
        HubSpotWriteBackend.options_model.model_validate(
            {"base_url": url, "access_token": PRIVATE_TOKEN, "objects": ["contacts"]}
        )


def test_a_207_error_naming_no_id_fails_the_records_without_a_result(url):
    from connectors.hubspot.client import Answer

    backend = _backend(url)
    answer = Answer(
        207,
        {
            "status": "COMPLETE",
            "results": [{"id": "1", "properties": {}}],
            "numErrors": 2,
            "errors": [
                {"status": "error", "category": "LOCKED", "message": "busy", "context": {}},
                {"status": "error", "category": "INVALID_EMAIL", "context": {"ids": ["3"]}},
            ],
        },
    )
    chunk = [(0, "1", {}), (1, "2", {}), (2, "3", {})]
    results = backend._results(answer, chunk)
    backend.close()
    assert results[0].error is None
    assert results[0].remote_id == "1"
    assert isinstance(results[1].error, RetryableError)
    assert isinstance(results[2].error, FatalError)
    assert results[2].error.context["category"] == "INVALID_EMAIL"
