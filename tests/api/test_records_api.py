"""Ingest with Idempotency-Key over real HTTP, on SQLite and PostgreSQL.

Same key and body → the first answer byte for byte; other body → 422; while the first is in
flight → 409; after a crash between storing and answering → the stored records, never twice.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from junction.api.routes.records import SOURCE
from junction.pipeline.push import PushIngestor
from junction.store.idempotency import IdempotencyKeys, body_hash, derived_id
from junction.store.repo import Store
from tests.api.harness import ApiHarness

LEAD = {
    "lead_id": "L-1",
    "email": "Ada.Lovelace@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "country": "GB",
    "lead_source": "Referral",
    "title": "CEO",
}
BAD = {**LEAD, "lead_id": "L-2", "email": ""}  # fails the pipeline's has_email rule
URL = "/api/v1/records/leads"


def _client(api: ApiHarness, *roles: str) -> tuple[str, dict[str, str]]:
    """A new oauth client's id and bearer headers."""
    client, token = api.new_client_token("ingest-test", list(roles or ("ingest",)))
    return client.id, {"Authorization": f"Bearer {token}"}


def _post(api: ApiHarness, headers: dict[str, str], key: str | None, body: Any) -> httpx.Response:
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = key
    with api.http() as c:
        return c.post(URL, json=body, headers=h)


def _records(api: ApiHarness) -> int:
    return api.ctx.store.counts("leads")["records"]


def test_ingest_stores_scores_and_quarantines(api: ApiHarness) -> None:
    _, headers = _client(api)
    r = _post(api, headers, "k-1", {"records": [LEAD, BAD]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["accepted"], body["quarantined"], body["duplicate"]) == (1, 1, False)
    [stored] = body["records"]
    assert stored["index"] == 0
    assert stored["record_id"].startswith("leads:")
    assert 0.0 <= stored["score"]["value"] <= 1.0
    [error] = body["errors"]
    assert (error["index"], error["stage"], error["code"]) == (1, "validate", "rule_failed")
    assert error["message"]
    assert "lovelace" not in r.text.lower()
    assert api.ctx.store.fetch_record(stored["record_id"]) is not None
    assert _records(api) == 1


def test_same_key_and_body_replays_the_first_answer_byte_for_byte(api: ApiHarness) -> None:
    _, headers = _client(api)
    first = _post(api, headers, "order-42", {"records": [LEAD, BAD]})
    assert first.status_code == 201
    # the same JSON with other key order and spacing is the same body
    reordered = (
        b'{ "records" : [ '
        + orjson.dumps(LEAD)
        + b" , "
        + orjson.dumps(dict(reversed(list(BAD.items()))))
        + b" ] }"
    )
    with api.http() as c:
        again = c.post(
            URL,
            content=reordered,
            headers={**headers, "Idempotency-Key": "order-42", "content-type": "application/json"},
        )
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _records(api) == 1
    assert api.ctx.store.counts("leads")["quarantined"] == 1


def test_same_key_with_another_body_is_422(api: ApiHarness) -> None:
    _, headers = _client(api)
    assert _post(api, headers, "k", {"records": [LEAD]}).status_code == 201
    other = _post(api, headers, "k", {"records": [{**LEAD, "lead_id": "L-9"}]})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_mismatch"
    assert _records(api) == 1


def test_keys_are_per_client_and_per_pipeline(api: ApiHarness) -> None:
    _, alice = _client(api)
    _, bob = _client(api)
    a = _post(api, alice, "shared-key", {"records": [LEAD]})
    b = _post(api, bob, "shared-key", {"records": [LEAD]})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["event_id"] != b.json()["event_id"]
    assert "idempotent-replayed" not in b.headers
    assert _records(api) == 2


def test_missing_or_bad_key_and_unknown_pipeline(api_sqlite: ApiHarness) -> None:
    _, headers = _client(api_sqlite)
    missing = _post(api_sqlite, headers, None, {"records": [LEAD]})
    blank = _post(api_sqlite, headers, "", {"records": [LEAD]})
    too_long = _post(api_sqlite, headers, "k" * 256, {"records": [LEAD]})
    assert [missing.status_code, blank.status_code, too_long.status_code] == [400, 400, 400]
    assert missing.json()["code"] == "idempotency_key_missing"
    assert too_long.json()["code"] == "idempotency_key_invalid"
    with api_sqlite.http() as c:
        unknown = c.post(
            "/api/v1/records/nope",
            json={"records": [LEAD]},
            headers={**headers, "Idempotency-Key": "x"},
        )
        empty = c.post(URL, json={"records": []}, headers={**headers, "Idempotency-Key": "y"})
        too_many = c.post(
            URL, json={"records": [LEAD] * 1001}, headers={**headers, "Idempotency-Key": "z"}
        )
        viewer = c.post(
            URL,
            json={"records": [LEAD]},
            headers={**api_sqlite.headers("viewer"), "Idempotency-Key": "v"},
        )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "pipeline_not_found"
    assert (empty.status_code, too_many.status_code, viewer.status_code) == (422, 422, 403)
    assert _records(api_sqlite) == 0


def test_a_request_in_flight_makes_a_repeat_409(api: ApiHarness) -> None:
    client_id, headers = _client(api)
    body = {"records": [LEAD]}
    keys = IdempotencyKeys(api.ctx.store)
    scope = f"{client_id}:records:leads"
    # the first request holds the claim (as while it is still storing its records)
    held = keys.claim(scope, "busy", body_hash(body["records"]))
    assert held.kind == "new"
    r = _post(api, headers, "busy", body)
    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_key_in_flight"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert _records(api) == 0
    # the first request answers; the repeat now gets that answer
    keys.complete(scope, "busy", held.token, 201, b'{"first":true}')
    replay = _post(api, headers, "busy", body)
    assert (replay.status_code, replay.content) == (201, b'{"first":true}')


def test_racing_requests_store_the_records_once(api: ApiHarness) -> None:
    _, headers = _client(api)
    records = [{**LEAD, "lead_id": f"L-{i}"} for i in range(1000)]  # slow enough to overlap

    def send(_: int) -> httpx.Response:
        return _post(api, headers, "race", {"records": records})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    firsts = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(firsts) == 1
    for r in answers:
        assert r.status_code in (201, 409), r.text
        if r.status_code == 201:
            assert r.content == firsts[0].content
    assert firsts[0].json()["accepted"] == 1000
    assert _records(api) == 1000


def test_a_crash_after_storing_is_answered_from_the_stored_records(api: ApiHarness) -> None:
    client_id, headers = _client(api)
    body = {"records": [LEAD, BAD]}
    # the first attempt stored its records under the derived event id, then the process died
    # before it stored the answer: its claim is still pending, and older than the lease
    event_id = derived_id(client_id, "leads", "crashy")
    first = PushIngestor(api.ctx.hub.runner("leads")).ingest(
        body["records"], source=SOURCE, event_id=event_id
    )
    keys = IdempotencyKeys(api.ctx.store)
    stale = keys.claim(
        f"{client_id}:records:leads", "crashy", body_hash(body["records"]), now=time.time() - 120
    )
    assert stale.kind == "new"
    r = _post(api, headers, "crashy", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["duplicate"] is True
    assert out["event_id"] == event_id
    assert [x["record_id"] for x in out["records"]] == [x["record_id"] for x in first.stored]
    assert out["records"][0]["score"]["grade"] == first.stored[0]["score"]["grade"]
    assert [(e["index"], e["code"]) for e in out["errors"]] == [(1, "rule_failed")]
    assert (out["accepted"], out["quarantined"]) == (1, 1)
    assert _records(api) == 1
    again = _post(api, headers, "crashy", body)
    assert (again.status_code, again.content) == (200, r.content)


# the key store itself, on both backends


def test_claims_take_over_stale_leases_and_expire(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        keys = IdempotencyKeys(store, lease_s=60, ttl_s=3600)
        t0 = 1_000_000.0
        first = keys.claim("c:r", "k", "h1", now=t0)
        assert first.kind == "new"
        assert keys.claim("c:r", "k", "h1", now=t0 + 10).kind == "in_flight"
        assert keys.claim("c:r", "k", "h2", now=t0 + 10).kind == "mismatch"
        taken = keys.claim("c:r", "k", "h1", now=t0 + 61)
        assert taken.kind == "reclaimed"
        # the crashed owner can no longer answer; the new owner can
        assert not keys.complete("c:r", "k", first.token, 201, b"old")
        assert keys.complete("c:r", "k", taken.token, 201, b"new")
        replay = keys.claim("c:r", "k", "h1", now=t0 + 62)
        assert (replay.kind, replay.status_code, replay.response) == ("replay", 201, b"new")
        # after the ttl the key is free again, even for another body
        assert keys.claim("c:r", "k", "h2", now=t0 + 3601).kind == "new"
        # a released claim frees the key at once
        other = keys.claim("c:r", "k2", "h", now=t0)
        keys.release("c:r", "k2", other.token)
        assert keys.claim("c:r", "k2", "h", now=t0 + 1).kind == "new"
        assert keys.purge(now=t0 + 10**6) == 2
    finally:
        store.close()


@pytest.mark.parametrize("n", [1, 5])
def test_the_event_id_is_stable_per_client_pipeline_and_key(n: int) -> None:
    ids = {derived_id("client", "leads", f"k{i}") for i in range(n)}
    assert len(ids) == n
    assert derived_id("client", "leads", "k0") == derived_id("client", "leads", "k0")
    assert derived_id("client", "leads", "k0") != derived_id("client", "other", "k0")
    assert len(derived_id("a", "b", "c")) == 32
