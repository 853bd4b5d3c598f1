"""Salesforce reads against the fake org, through the real simple-salesforce SDK."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from connectors.salesforce import SalesforceConfig, SalesforceConnector
from connectors.salesforce.connector import window_floor
from connectors.salesforce.outbound_message import normalize_stamp
from junction.core.errors import (
    ConfigError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)
from tests.fakes.salesforce import FakeOrg, _parse_dt, options_for
from tests.fakes.salesforce_data import lead_fields
from tests.fakes.server import serve_app

VERSION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def org():
    org = FakeOrg()
    for i in range(450):
        org.insert("Lead", lead_fields(i))
    return org


def connect(org, url, **extra) -> SalesforceConnector:
    extra.setdefault("page_size", 200)
    return SalesforceConnector(SalesforceConfig.model_validate(options_for(org, url, **extra)))


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b.keys]


def test_first_read_pages_keys_and_versions(org, url):
    conn = connect(org, url)
    batches = list(conn.read("Lead", None))
    conn.close()
    assert [len(b) for b in batches] == [200, 200, 50]
    keys = keys_of(batches)
    assert len(set(keys)) == 450
    versions = [v for b in batches for v in (b.versions or [])]
    assert all(VERSION.match(v) for v in versions)
    assert versions == sorted(versions)
    first = batches[0].records[0]
    assert keys[0] == f"{first['Id']}@{normalize_stamp(first['SystemModstamp'])}"
    assert first["attributes"]["type"] == "Lead"
    assert "Address" not in first  # compound fields are not queried
    # one query plus two nextRecordsUrl pages, batchSize honoured
    assert sum(1 for _m, p in org.requests if re.search(r"/query/01g\w+-\d+$", p)) == 2


def test_resume_from_each_batch_cursor_repeats_and_loses_nothing(org, url):
    conn = connect(org, url)
    batches = list(conn.read("Lead", None))
    for k, batch in enumerate(batches):
        rest = keys_of(conn.read("Lead", batch.cursor))
        assert rest == keys_of(batches[k + 1 :]), f"resume after batch {k}"
    conn.close()


def test_record_at_the_watermark_is_read_once(org, url):
    conn = connect(org, url)
    final = list(conn.read("Lead", None))[-1].cursor
    watermark = _parse_dt(final["watermark"])
    new = org.insert("Lead", lead_fields(999), modstamp=watermark)
    again = list(conn.read("Lead", final))
    assert [k.split("@")[0] for k in keys_of(again)] == [new]
    assert list(conn.read("Lead", again[-1].cursor)) == []
    conn.close()


def test_skewed_record_within_the_overlap_is_read_beyond_it_is_not(org, url):
    conn = connect(org, url, overlap_s=300)
    final = list(conn.read("Lead", None))[-1].cursor
    watermark = _parse_dt(final["watermark"])
    inside = org.insert("Lead", lead_fields(1001), modstamp=watermark - timedelta(seconds=299))
    outside = org.insert("Lead", lead_fields(1002), modstamp=watermark - timedelta(seconds=301))
    ids = [k.split("@")[0] for k in keys_of(conn.read("Lead", final))]
    conn.close()
    assert ids == [inside]
    assert outside not in ids  # the documented bound: skew beyond overlap_s is not covered


def test_records_updated_during_the_poll_are_read_by_the_next_one(org, url):
    conn = connect(org, url)
    reader = conn.read("Lead", None)
    first = next(reader)
    early = first.records[0]["Id"]  # already read
    late_batch = list(org.records["Lead"])[-1]  # not read yet
    org.update("Lead", early, {"Status": "Working - Contacted"})
    org.update("Lead", late_batch, {"Status": "Working - Contacted"})
    rest = list(reader)
    seen = keys_of([first, *rest])
    nxt = list(conn.read("Lead", rest[-1].cursor))
    conn.close()
    updated = {k.split("@")[0]: k for k in keys_of(nxt)}
    assert set(updated) == {early, late_batch}
    assert not set(updated.values()) & set(seen)
    assert all(r["Status"] == "Working - Contacted" for b in nxt for r in b.records)


def test_cursor_remembers_only_the_overlap_window(org, url):
    conn = connect(org, url, overlap_s=60)
    final = list(conn.read("Lead", None))[-1].cursor
    conn.close()
    floor = window_floor(final["watermark"], 60)
    assert final["seen"], "records inside the window are remembered"
    assert all(v >= floor for v in final["seen"].values())
    assert len(final["seen"]) < 450


def test_start_date_limits_the_first_read(org, url):
    stamps = sorted(r["SystemModstamp"] for r in org.records["Lead"].values())
    start = _parse_dt(stamps[400])
    conn = connect(org, url, start_date=start.isoformat())
    assert len(keys_of(conn.read("Lead", None))) == 50
    conn.close()


def test_deletes_arrive_through_query_all(org, url):
    victim = list(org.records["Lead"])[3]
    plain = connect(org, url)
    final = list(plain.read("Lead", None))[-1].cursor
    org.delete("Lead", victim)
    assert keys_of(plain.read("Lead", final)) == []
    plain.close()
    with_deletes = connect(org, url, include_deleted=True)
    batches = list(with_deletes.read("Lead", final))
    with_deletes.close()
    assert [r["Id"] for b in batches for r in b.records] == [victim]
    assert batches[0].records[0]["IsDeleted"] is True
    assert any("/queryAll" in p for _m, p in org.requests)


def test_bulk_backfill_above_the_threshold(org, url):
    rest = connect(org, url)
    rest_batches = list(rest.read("Lead", None))
    rest.close()
    conn = connect(org, url, bulk_threshold=100, bulk_page_size=100, bulk_poll_s=0.01)
    batches = list(conn.read("Lead", None))
    assert [len(b) for b in batches] == [100, 100, 100, 100, 50]
    assert {b.provenance["api"] for b in batches} == {"bulk2"}
    assert sorted(keys_of(batches)) == sorted(keys_of(rest_batches))
    assert any(p.endswith("/jobs/query") for m, p in org.requests if m == "POST")
    by_id = {r["Id"]: r for b in rest_batches for r in b.records}
    for record in batches[0].records:
        same = by_id[record["Id"]]
        for name in ("NumberOfEmployees", "AnnualRevenue", "IsConverted", "Title", "Email"):
            assert record[name] == same[name], name  # CSV text typed like REST JSON
    # every batch's cursor resumes exactly after it (bulk results are unordered)
    for k, batch in enumerate(batches):
        assert keys_of(conn.read("Lead", batch.cursor)) == keys_of(batches[k + 1 :])
    # the last cursor is an ordinary watermark: nothing new, then new changes arrive by REST
    assert "bulk" not in batches[-1].cursor
    assert keys_of(conn.read("Lead", batches[-1].cursor)) == []
    changed = list(org.records["Lead"])[7]
    org.update("Lead", changed, {"Status": "Closed - Converted"})
    nxt = list(conn.read("Lead", batches[-1].cursor))
    conn.close()
    assert [r["Id"] for b in nxt for r in b.records] == [changed]
    assert nxt[0].provenance["api"] == "rest"


def test_bulk_with_deleted_records_uses_query_all(org, url):
    victim = next(iter(org.records["Lead"]))
    org.delete("Lead", victim)
    conn = connect(
        org, url, include_deleted=True, bulk_threshold=10, bulk_page_size=1000, bulk_poll_s=0.01
    )
    records = [r for b in conn.read("Lead", None) for r in b.records]
    conn.close()
    assert len(records) == 450
    assert [r["Id"] for r in records if r["IsDeleted"]] == [victim]


def test_api_usage_share_stops_the_read(org, url):
    org.api_max = 1000
    org.api_used = 896  # describe, count and the first page take it to 899; page 2 to 900
    conn = connect(org, url, max_api_usage=0.9)
    got = []
    reader = conn.read("Lead", None)
    got.append(next(reader))
    got.append(next(reader))
    with pytest.raises(RateLimitedError) as info:
        next(reader)
    assert info.value.retry_after == 3600
    assert [len(b) for b in got] == [200, 200]  # the 900th request was the last
    assert org.api_used == 900
    # the cursor of what was read is still good
    assert got[-1].cursor["watermark"]
    # an hour later the org's usage has rolled down: the old sample no longer blocks a read
    org.api_used = 100
    with pytest.raises(RateLimitedError):
        list(conn.read("Lead", got[-1].cursor))
    conn.client._session.usage_at -= 3601
    assert len(keys_of(conn.read("Lead", got[-1].cursor))) == 50
    conn.close()


def test_rate_limit_is_typed_with_the_fakes_retry_after(org, url):
    conn = connect(org, url)
    conn.check()
    org.faults.fail_next("rate_limit", 1, path_contains="/query")
    with pytest.raises(RateLimitedError) as info:
        list(conn.read("Lead", None))
    conn.close()
    assert info.value.retry_after == 7.0


def test_server_error_is_unavailable(org, url):
    conn = connect(org, url)
    org.faults.fail_next("server_error", 1)
    with pytest.raises(UnavailableError):
        list(conn.read("Lead", None))
    conn.close()


def test_timeout_is_remote_timeout(org, url):
    org.faults.delay_s = 0.6
    conn = connect(org, url, timeout_s=0.2)
    conn.check()
    org.faults.fail_next("timeout", 1, path_contains="/query")
    with pytest.raises(RemoteTimeoutError):
        list(conn.read("Lead", None))
    conn.close()


def test_connection_refused_is_unavailable(org):
    with serve_app(org.app()) as gone:
        pass
    conn = connect(org, gone)
    with pytest.raises(UnavailableError):
        list(conn.read("Lead", None))
    result = conn.check()
    conn.close()
    assert not result.ok


def test_expired_session_mid_read_relogs_in_and_continues(org, url):
    conn = connect(org, url)
    reader = conn.read("Lead", None)
    first = next(reader)
    org.revoke_tokens()  # the next page answers 401 INVALID_SESSION_ID
    second = next(reader)
    org.faults.fail_next("expired_session", 1, path_contains="/query/")
    rest = list(reader)
    conn.close()
    assert len(set(keys_of([first, second, *rest]))) == 450
    assert org.logins == ["client_credentials"] * 3  # first login, then one per 401


def test_unknown_object_and_bad_names_are_config_errors(org, url):
    conn = connect(org, url)
    with pytest.raises(ConfigError):
        list(conn.read("Nope__c", None))
    with pytest.raises(ConfigError):
        list(conn.read("Lead WHERE Id != null", None))
    conn.close()
    bad_field = connect(org, url, fields={"Lead": ["Email", "NoSuchField__c"]})
    with pytest.raises(ConfigError):
        list(bad_field.read("Lead", None))
    bad_field.close()


def test_configured_fields_are_read_with_id_and_stamp(org, url):
    conn = connect(org, url, fields={"Lead": ["Email", "Company"]})
    record = next(iter(conn.read("Lead", None))).records[0]
    conn.close()
    assert set(record) == {"attributes", "Id", "SystemModstamp", "Email", "Company"}


def test_discover_and_check(org, url):
    conn = connect(org, url)
    streams = {s.name: s for s in conn.discover()}
    assert set(streams) == {"Lead", "Contact", "Account", "Opportunity"}
    lead = streams["Lead"]
    assert lead.key_fields == ("Id",)
    assert lead.cursor_field == "SystemModstamp"
    props = lead.json_schema["properties"]
    assert props["NumberOfEmployees"]["type"] == ["integer", "null"]
    assert "Address" not in props
    assert conn.check().ok
    conn.close()
    conn.close()
    missing = connect(org, url, objects=["Lead", "Invoice__c"])
    result = missing.check()
    missing.close()
    assert not result.ok
    assert "Invoice__c" in result.message


def test_foreign_cursor_is_refused(org, url):
    conn = connect(org, url)
    with pytest.raises(ConfigError):
        list(conn.read("Lead", {"row": 5}))
    conn.close()


def test_an_expired_bulk_job_is_read_again_from_the_start(org, url):
    conn = connect(org, url, bulk_threshold=100, bulk_page_size=100, bulk_poll_s=0.01)
    first = next(iter(conn.read("Lead", None)))
    assert first.cursor["bulk"]["locator"]
    org._jobs.clear()  # Salesforce deletes query job results after a while
    again = keys_of(conn.read("Lead", first.cursor))
    conn.close()
    # losses are not allowed; repeats are (the store keeps one row per key), except for the
    # records the cursor still remembers in its overlap window
    assert len(set(again) | set(first.keys)) == 450
    assert len(again) > 450 - len(first)


def test_fetch_by_id_reads_current_state(org, url):
    ids = list(org.records["Lead"])
    org.delete("Lead", ids[3])
    conn = connect(org, url)
    wanted = [ids[5], ids[1][:15], "00Q5g00000ZZZZZEAA", ids[3]]
    batch = conn.fetch("Lead", wanted)
    assert sorted(r["Id"] for r in batch.records) == sorted([ids[1], ids[5]])
    for record, key, version, position in zip(
        batch.records, batch.keys, batch.versions or [], batch.positions, strict=True
    ):
        assert key == f"{record['Id']}@{version}"
        assert version == normalize_stamp(record["SystemModstamp"])
        assert wanted[position][:15] == record["Id"][:15]
    with pytest.raises(ConfigError):
        conn.fetch("Lead", ["00Q' OR Name != '"])
    conn.close()
    deleted = connect(org, url, include_deleted=True)
    assert [r["IsDeleted"] for r in deleted.fetch("Lead", [ids[3]]).records] == [True]
    deleted.close()


def test_sub_second_stamps_and_the_whole_second_query_bound():
    org = FakeOrg()
    base = org.clock
    # pairs of records a quarter second apart, around every second of a 3-minute span
    for i in range(240):
        org.insert("Lead", lead_fields(i), modstamp=base + timedelta(milliseconds=750 * i))
    with serve_app(org.app()) as url:
        conn = connect(org, url, overlap_s=61.5)
        batches = list(conn.read("Lead", None))
        for k, batch in enumerate(batches):
            assert keys_of(conn.read("Lead", batch.cursor)) == keys_of(batches[k + 1 :])
        conn.close()
    resumed = [q for q in org.soql if "WHERE" in q]
    assert resumed
    for q in resumed:
        literal = re.search(r">= (\S+)", q).group(1)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", literal), q
