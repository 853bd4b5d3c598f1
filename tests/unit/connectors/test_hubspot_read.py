"""HubSpot incremental reads against the local fake portal, through the real SDK.

Boundaries: records at the watermark, updated during the poll, stamped by a skewed clock; resume
from every batch's cursor; the search API's result cap with a lowered cap; ties at one timestamp.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.hubspot import connector as connector_module
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.connector import iso_ms
from junction.core.errors import ConfigError, FatalError
from tests.fakes.hubspot import DEFINITIONS, PRIVATE_TOKEN, HubSpotFake

T0 = 1_772_355_600_000  # 2026-03-01T09:00:00Z in ms


@pytest.fixture
def fake() -> HubSpotFake:
    return HubSpotFake()


def _connector(url: str, **options: Any) -> HubSpotConnector:
    cfg = {"base_url": url, "access_token": PRIVATE_TOKEN, "page_size": 3, "timeout_s": 5}
    return HubSpotConnector(HubSpotConfig.model_validate({**cfg, **options}))


def _read(conn: HubSpotConnector, cursor: dict[str, Any] | None, stream: str = "contacts"):
    return list(conn.read(stream, cursor))


def _keys(batches) -> list[str]:
    return [k for b in batches for k in b.keys]


def _ids(batches) -> list[str]:
    return [r["id"] for b in batches for r in b.records]


def test_first_read_yields_every_record_in_modified_order_one_batch_per_page(fake, url):
    ids = [fake.put("contacts", updated=T0 + i * 1000, email=f"u{i}@x.io") for i in range(7)]
    conn = _connector(url)
    batches = _read(conn, None)
    conn.close()
    # each page after the first starts at the previous page's last timestamp (GTE), so it meets
    # that record again and skips it: pages of 3 give batches of 3, 2, 2
    assert [len(b) for b in batches] == [3, 2, 2]
    assert _ids(batches) == ids
    assert _keys(batches) == [f"{rid}@{iso_ms(T0 + i * 1000)}" for i, rid in enumerate(ids)]
    versions = [v for b in batches for v in b.versions]
    assert versions == sorted(versions)
    assert versions[0] == "2026-03-01T09:00:00.000Z"
    assert batches[0].records[0]["properties"]["email"] == "u0@x.io"
    # every page is a fresh search from a timestamp: no result offset is ever sent
    assert all("after" not in body or body["after"] is None for body in fake.search_bodies)
    first = fake.search_bodies[0]
    assert first["filterGroups"] == [
        {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}
    ]
    assert first["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert first["limit"] == 3


def _check_resume_from_every_cursor(conn: HubSpotConnector, stream: str = "contacts") -> None:
    first = _read(conn, None, stream)
    every = _keys(first)
    assert len(every) == len(set(every))
    for i, batch in enumerate(first):
        done = set(_keys(first[: i + 1]))
        again = _keys(_read(conn, batch.cursor, stream))
        assert len(again) == len(set(again)), f"repeats after batch {i}"
        assert not set(again) & done, f"batch {i}: records before the cursor were read again"
        assert set(again) == set(every) - done, f"batch {i}: records after the cursor were lost"


def test_resume_from_every_batch_cursor_loses_nothing_and_repeats_nothing(fake, url):
    # ties at one timestamp across page boundaries, and distinct stamps
    stamps = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6, 7, 7, 7, 7, 7, 8]
    for s in stamps:
        fake.put("contacts", updated=T0 + s * 1000)
    conn = _connector(url, page_size=4)
    _check_resume_from_every_cursor(conn)
    conn.close()


def test_resume_holds_when_the_cursor_bound_drops_old_timestamps(fake, url, monkeypatch):
    monkeypatch.setattr(connector_module, "SEEN_LIMIT", 4)
    for i in range(25):
        fake.put("contacts", updated=T0 + (i // 2) * 1000)
    conn = _connector(url, page_size=3)
    _check_resume_from_every_cursor(conn)
    final = _read(conn, None)[-1].cursor
    assert len(final["seen"]) <= 4
    conn.close()


def test_a_record_at_the_watermark_is_read_on_the_next_poll(fake, url):
    for i in range(4):
        fake.put("contacts", updated=T0 + i * 1000)
    conn = _connector(url)
    cursor = _read(conn, None)[-1].cursor
    assert cursor["watermark"] == iso_ms(T0 + 3000)
    late = fake.put("contacts", updated=T0 + 3000)  # same millisecond as the watermark
    batches = _read(conn, cursor)
    assert _ids(batches) == [late]
    assert _read(conn, batches[-1].cursor) == []
    conn.close()


def test_a_record_updated_during_the_poll_is_read_and_none_is_skipped(fake, url):
    ids = [fake.put("contacts", updated=T0 + i * 1000) for i in range(9)]
    conn = _connector(url)
    seen: list[str] = []
    batches = []
    for n, batch in enumerate(conn.read("contacts", None)):
        batches.append(batch)
        seen.extend(_ids([batch]))
        if n == 0:
            # an already-read record changes: with offset paging, every later record would
            # shift one place up and one would be skipped
            fake.touch("contacts", ids[0], updated=T0 + 60_000, email="new@x.io")
    assert set(seen) == set(ids)
    assert seen.count(ids[0]) == 2  # the old version, then the new one
    assert batches[-1].records[-1]["properties"]["email"] == "new@x.io"
    assert len(set(_keys(batches))) == len(_keys(batches)) == 10
    assert _read(conn, batches[-1].cursor) == []
    conn.close()


def test_a_late_record_within_the_overlap_is_read_and_beyond_it_is_not(fake, url):
    for i in range(3):
        fake.put("contacts", updated=T0 + i * 1000)
    conn = _connector(url, overlap_s=300)
    cursor = _read(conn, None)[-1].cursor
    watermark = T0 + 2000
    # indexed late, or stamped by a clock 100 s behind
    skewed = fake.put("contacts", updated=watermark - 100_000)
    # further back than the overlap: the documented limit of a polling read
    too_late = fake.put("contacts", updated=watermark - 301_000)
    got = _ids(_read(conn, cursor))
    assert skewed in got
    assert too_late not in got
    conn.close()


def test_without_overlap_a_skewed_record_is_missed(fake, url):
    for i in range(3):
        fake.put("contacts", updated=T0 + i * 1000)
    conn = _connector(url, overlap_s=0)
    cursor = _read(conn, None)[-1].cursor
    fake.put("contacts", updated=T0 + 2000 - 100_000)
    assert _read(conn, cursor) == []
    conn.close()


def test_an_updated_record_is_read_again_with_its_new_version(fake, url):
    rid = fake.put("contacts", updated=T0, email="a@x.io")
    conn = _connector(url)
    cursor = _read(conn, None)[-1].cursor
    fake.touch("contacts", rid, updated=T0 + 5000, email="b@x.io")
    batches = _read(conn, cursor)
    assert _keys(batches) == [f"{rid}@{iso_ms(T0 + 5000)}"]
    assert batches[0].records[0]["properties"]["email"] == "b@x.io"
    conn.close()


def test_more_records_than_the_search_cap_are_all_read(fake, url):
    fake.search_cap = 30
    ids = [fake.put("contacts", updated=T0 + i * 1000) for i in range(100)]
    conn = _connector(url, page_size=10)
    batches = _read(conn, None)
    assert _ids(batches) == ids
    # the lowered cap is real: a search past it is refused, as HubSpot refuses after=10000
    client = HubSpotClient(HubSpotConfig(base_url=url, access_token=PRIVATE_TOKEN))
    with pytest.raises(FatalError, match="HTTP 400"):
        client.search(
            "contacts",
            filter_groups=[],
            sort_property="lastmodifieddate",
            properties=[],
            limit=10,
            after="30",
        )
    client.close()
    conn.close()


def test_many_records_sharing_one_timestamp_beyond_the_cap(fake, url):
    fake.search_cap = 30
    before = [fake.put("contacts", updated=T0 - 1000) for _ in range(2)]
    tied = [fake.put("contacts", updated=T0) for _ in range(45)]
    after = [fake.put("contacts", updated=T0 + 1000) for _ in range(3)]
    conn = _connector(url, page_size=10)
    batches = _read(conn, None)
    got = _ids(batches)
    assert len(got) == len(set(got)) == 50
    assert set(got) == set(before + tied + after)
    assert set(got[:2]) == set(before)
    assert set(got[-3:]) == set(after)
    # the tie is walked by id
    tie_walks = [
        b
        for b in fake.search_bodies
        if any(f["operator"] == "EQ" for g in b["filterGroups"] for f in g["filters"])
    ]
    assert tie_walks
    assert all(b["sorts"][0]["propertyName"] == "hs_object_id" for b in tie_walks)
    _check_resume_from_every_cursor(conn)
    conn.close()


def test_configured_properties_are_read_with_the_id_and_modified_ones(fake, url):
    fake.put("contacts", updated=T0, email="a@x.io", firstname="Ann", phone="5551234567")
    conn = _connector(url, properties={"contacts": ["email", "firstname"]})
    record = _read(conn, None)[0].records[0]
    assert fake.search_bodies[-1]["properties"] == [
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
    ]
    assert set(record["properties"]) == {
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "createdate",
    }
    assert "phone" not in record["properties"]
    conn.close()


def test_all_properties_come_from_the_properties_api(fake, url):
    fake.put("contacts", updated=T0, email="a@x.io", phone="5551234567")
    conn = _connector(url)
    record = _read(conn, None)[0].records[0]
    assert set(fake.search_bodies[-1]["properties"]) == set(DEFINITIONS["contacts"])
    assert record["properties"]["phone"] == "5551234567"
    assert record["properties"]["jobtitle"] is None
    assert ("GET", "/crm/v3/properties/contacts") in fake.calls
    conn.close()


@pytest.mark.parametrize("stream", ["companies", "deals"])
def test_companies_and_deals_walk_hs_lastmodifieddate(fake, url, stream):
    for i in range(5):
        fake.put(stream, updated=T0 + i * 1000, name=f"c{i}", dealname=f"d{i}")
    conn = _connector(url, objects=[stream])
    _check_resume_from_every_cursor(conn, stream)
    prop = fake.search_bodies[0]["filterGroups"][0]["filters"][0]["propertyName"]
    assert prop == "hs_lastmodifieddate"
    conn.close()


def test_the_pipeline_batch_size_is_accepted_and_caps_the_page(fake, url):
    from junction.pipeline.config import PipelineConfig
    from junction.pipeline.extract import build_connector

    for i in range(5):
        fake.put("contacts", updated=T0 + i * 1000)
    cfg = PipelineConfig.model_validate(
        {
            "source": {
                "connector": "hubspot",
                "streams": ["contacts"],
                "base_url": url,
                "access_token": PRIVATE_TOKEN,
                "objects": ["contacts"],
                "properties": {"contacts": ["email"]},
            },
            "mapping": "hubspot.lead",
            "batch_size": 2,
        }
    )
    conn = build_connector("leads", cfg)
    assert isinstance(conn, HubSpotConnector)
    assert [len(b) for b in _read(conn, None)] == [2, 1, 1, 1]
    assert fake.search_bodies[0]["limit"] == 2
    conn.close()


def test_start_date_bounds_the_first_read(fake, url):
    fake.put("contacts", updated=T0 - 1)
    newer = fake.put("contacts", updated=T0)
    conn = _connector(url, start_date="2026-03-01T09:00:00Z")
    assert _ids(_read(conn, None)) == [newer]
    conn.close()


def test_discover_lists_the_configured_objects(fake, url):
    conn = _connector(url, objects=["contacts", "deals"], properties={"deals": ["amount"]})
    streams = {s.name: s for s in conn.discover()}
    conn.close()
    assert set(streams) == {"contacts", "deals"}
    assert streams["contacts"].key_fields == ("id",)
    assert streams["contacts"].cursor_field == "lastmodifieddate"
    assert streams["deals"].cursor_field == "hs_lastmodifieddate"
    deal_props = streams["deals"].json_schema["properties"]["properties"]["properties"]
    assert set(deal_props) == {"amount", "hs_object_id", "hs_lastmodifieddate"}
    assert "email" in streams["contacts"].json_schema["properties"]["properties"]["properties"]


def test_unknown_stream_and_unreadable_cursor_are_config_errors(fake, url):
    conn = _connector(url)
    with pytest.raises(ConfigError, match="unknown HubSpot stream"):
        _read(conn, None, "tickets")
    with pytest.raises(ConfigError, match="cursor"):
        _read(conn, {"since": "yesterday-ish"})
    conn.close()


@pytest.mark.parametrize(
    "options",
    [
        {"access_token": None},
        {"client_id": "c", "client_secret": "s", "refresh_token": "r"},
        {"page_size": 101},
        {"properties": {"contacts": []}},
        {"objects": ["contacts", "contacts"]},
        {"base_url": "ftp://example.com"},
    ],
    ids=["no-auth", "both-auths", "page-size", "empty-properties", "repeat", "scheme"],
)
def test_invalid_configs_are_refused(options):
    base = {"access_token": PRIVATE_TOKEN}
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError
        HubSpotConfig.model_validate({**base, **options})
