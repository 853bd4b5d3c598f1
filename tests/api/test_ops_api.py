"""Read and operate over real HTTP, on SQLite and PostgreSQL: pipelines, runs, records,
quarantine, deliveries, channels and cursors, with paging, masking, audit and 404s."""

from __future__ import annotations

import csv
import hashlib
from typing import Any

import httpx
import pytest

from junction.core.errors import FatalError
from junction.pipeline.prepare import quarantine_row
from junction.store.audit import AuditLog
from scoring.synthetic import CSV_HEADER
from tests.api.harness import ApiHarness

STRONG = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "phone": "+44 20 7946 0018",
    "company": "Analytical Engines",
    "title": "CEO",
    "industry": "Software",
    "country": "US",
    "lead_source": "Referral",
    "employees": "5000",
    "page_views": "40",
    "visits": "12",
    "email_opens": "9",
}
ROWS = [
    {**STRONG, "lead_id": "L-1", "email": "ada@engines.example"},
    {**STRONG, "lead_id": "L-2", "email": "charles@engines.example"},
    {"lead_id": "L-3", "email": "weak@gmail.com", "lead_source": "Purchased List"},
    {"lead_id": "L-4", "email": "not-an-email"},  # the mapping rejects it (normalize)
    {"lead_id": "L-5", "email": ""},  # the has_email rule rejects it (validate)
]
V1 = "/api/v1"


def _drop(api: ApiHarness, name: str = "leads.csv") -> None:
    with (api.root / "inbox" / name).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_HEADER)
        writer.writeheader()
        for row in ROWS:
            writer.writerow(row)


def _run(api: ApiHarness) -> dict[str, Any]:
    with api.http() as h:
        r = h.post(f"{V1}/pipelines/leads/run", headers=api.headers("operator"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _get(api: ApiHarness, path: str, *roles: str, **params: Any) -> httpx.Response:
    with api.http() as h:
        headers = api.headers(*(roles or ("viewer",)))
        # httpx drops a query string in the URL when params are given, even empty ones
        return h.get(V1 + path, params=params or None, headers=headers)


def _post(api: ApiHarness, path: str, *roles: str, json: Any = None) -> httpx.Response:
    with api.http() as h:
        return h.post(V1 + path, json=json, headers=api.headers(*(roles or ("operator",))))


def _all(api: ApiHarness, path: str, limit: int, **params: Any) -> tuple[list[Any], int]:
    """Every item of a list, page by page; and how many pages it took."""
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        q = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = _get(api, path, **q)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return items, pages


def _actions(api: ApiHarness, action: str) -> list[Any]:
    return AuditLog(api.ctx.store).query(action=action)


@pytest.fixture
def loaded(api: ApiHarness) -> ApiHarness:
    """The API after one run over five rows: three stored, two quarantined."""
    _drop(api)
    summary = _run(api)
    assert (summary["read"], summary["stored"], summary["quarantined"]) == (5, 3, 2)
    return api


def test_pipelines_show_paused_state_last_run_and_counts(loaded: ApiHarness) -> None:
    r = _get(loaded, "/pipelines")
    assert r.status_code == 200
    [p] = r.json()["items"]
    assert (p["name"], p["connector"], p["mapping"], p["model"]) == (
        "leads",
        "csv_file",
        "csv.lead",
        "lead-score",
    )
    assert p["paused"] is False
    assert p["channels"] == ["webhook.sales"]
    assert p["last_run"]["status"] == "succeeded"
    assert p["last_run"]["counts"]["stored"] == 3
    detail = _get(loaded, "/pipelines/leads").json()
    assert detail["counts"]["records"] == 3
    assert detail["counts"]["quarantined"] == 2
    assert _actions(loaded, "pipeline.run")


def test_pause_blocks_runs_until_resumed(api: ApiHarness) -> None:
    paused = _post(api, "/pipelines/leads/pause")
    assert paused.json() == {"pipeline": "leads", "paused": True, "changed": True}
    assert _post(api, "/pipelines/leads/pause").json()["changed"] is False
    assert _get(api, "/pipelines").json()["items"][0]["paused"] is True
    blocked = _post(api, "/pipelines/leads/run")
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "pipeline_paused"
    assert _get(api, "/runs").json()["items"] == []
    resumed = _post(api, "/pipelines/leads/resume")
    assert resumed.json() == {"pipeline": "leads", "paused": False, "changed": True}
    assert _post(api, "/pipelines/leads/run").status_code == 200
    assert len(_actions(api, "pipeline.pause")) == 2
    assert len(_actions(api, "pipeline.resume")) == 1
    assert _post(api, "/pipelines/leads/pause", "viewer").status_code == 403


def test_runs_page_newest_first_and_show_counts(api: ApiHarness) -> None:
    ids = [_run(api)["run_id"] for _ in range(3)]
    runs, pages = _all(api, "/runs", 2, pipeline="leads")
    assert pages == 2
    assert [r["id"] for r in runs] == sorted(ids, reverse=True)
    one = _get(api, f"/runs/{ids[0]}").json()
    assert one["status"] == "succeeded"
    assert one["counts"]["read"] == 0
    assert _get(api, "/runs", status="failed").json()["items"] == []


def test_records_page_and_mask_personal_fields_unless_an_admin_reveals(
    loaded: ApiHarness,
) -> None:
    records, pages = _all(loaded, "/pipelines/leads/records", 2)
    assert pages == 2
    assert len(records) == 3
    assert all(r["score"]["model"] == "lead-score" for r in records)
    assert "payload" not in records[0]
    by_key = {r["source_key"]: r for r in records}
    rid = by_key["L-1"]["id"]
    masked = _get(loaded, f"/pipelines/leads/records/{rid}")
    assert masked.status_code == 200, masked.text
    body = masked.json()
    assert body["revealed"] is False
    assert body["payload"]["email"] == "<masked str len=19>"
    assert body["payload"]["first_name"].startswith("<masked")
    assert body["payload"]["company"] == "Analytical Engines"
    assert "ada@engines.example" not in masked.text
    assert "Lovelace" not in masked.text
    assert body["scores"][0]["grade"] == "A"
    assert [d["channel"] for d in body["deliveries"]] == ["webhook.sales"]
    forbidden = _get(loaded, f"/pipelines/leads/records/{rid}", "operator", reveal="true")
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "reveal_forbidden"
    revealed = _get(loaded, f"/pipelines/leads/records/{rid}", "admin", reveal="true").json()
    assert revealed["payload"]["email"] == "ada@engines.example"
    [entry] = _actions(loaded, "record.reveal")
    assert entry.target == rid


def test_quarantine_lists_masks_replays_and_discards(loaded: ApiHarness) -> None:
    items, _ = _all(loaded, "/quarantine", 1, pipeline="leads")
    assert sorted(i["stage"] for i in items) == ["normalize", "validate"]
    [rule] = _get(loaded, "/quarantine", stage="validate").json()["items"]
    assert rule["error_code"] == "rule_failed"
    shown = _get(loaded, f"/quarantine/{rule['id']}")
    payload = shown.json()["payload"]
    assert payload["format"] == "json"
    assert payload["data"]["lead_id"] == "<masked str len=3>"
    assert payload["data"]["email"] == "<masked str len=0>"
    revealed = _get(loaded, f"/quarantine/{rule['id']}", "admin", reveal="true").json()
    assert revealed["payload"]["data"]["lead_id"] == "L-5"

    # the rule still fails: the entry closes as replayed and a new open one takes its place
    replayed = _post(loaded, f"/quarantine/{rule['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "replayed"
    assert "failed again" in replayed.json()["outcome"]
    again = _post(loaded, f"/quarantine/{rule['id']}/replay")
    assert again.status_code == 409
    assert again.json()["code"] == "quarantine_not_open"
    [new] = _get(loaded, "/quarantine", stage="validate").json()["items"]
    assert new["id"] != rule["id"]

    denied = _post(loaded, f"/quarantine/{new['id']}/discard", json={"reason": "test lead"})
    assert denied.status_code == 403  # discarding is for admins
    no_reason = _post(loaded, f"/quarantine/{new['id']}/discard", "admin", json={})
    assert no_reason.status_code == 422
    gone = _post(loaded, f"/quarantine/{new['id']}/discard", "admin", json={"reason": "test lead"})
    assert gone.json() == {"id": new["id"], "status": "discarded", "reason": "test lead"}
    detail = _get(loaded, f"/quarantine/{new['id']}").json()
    assert detail["status"] == "discarded"
    assert detail["context"]["resolution"]["reason"] == "test lead"
    assert _get(loaded, "/quarantine", stage="validate").json()["items"] == []
    assert len(_get(loaded, "/quarantine", status="any").json()["items"]) == 3
    [entry] = _actions(loaded, "quarantine.discard")
    assert entry.detail["reason"] == "test lead"
    assert _actions(loaded, "quarantine.replay")


def test_replaying_a_dead_delivery_requeues_it(loaded: ApiHarness) -> None:
    store = loaded.ctx.store
    [delivery] = _get(loaded, "/deliveries", status="pending").json()["items"][:1]
    # what the delivery worker does when a delivery exhausts its retries
    with store.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE deliveries SET status = 'dead', attempts = 8 WHERE id = "
            + ("?" if store.dialect == "sqlite" else "%s"),
            (delivery["id"],),
        )
    store.quarantine_one(
        quarantine_row(
            "leads", "deliver", delivery["id"], FatalError("receiver said 410"), None, {}, None
        )
    )
    [dead] = _get(loaded, "/quarantine", stage="deliver").json()["items"]
    r = _post(loaded, f"/quarantine/{dead['id']}/replay")
    assert r.json() == {"id": dead["id"], "outcome": "delivery re-queued", "status": "replayed"}
    assert _get(loaded, f"/deliveries/{delivery['id']}").json()["status"] == "pending"


def test_deliveries_list_filter_and_show_masked_with_attempts(loaded: ApiHarness) -> None:
    pending, _ = _all(loaded, "/deliveries", 1, status="pending", channel="webhook.sales")
    assert len(pending) == 2
    assert all("payload" not in d for d in pending)
    assert _get(loaded, "/deliveries", status="dead").json()["items"] == []
    one = _get(loaded, f"/deliveries/{pending[0]['id']}")
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["history"] == []
    assert body["payload"]["record"]["email"].startswith("<masked")
    assert body["payload"]["score"]["grade"] == "A"
    assert "@engines.example" not in one.text
    unknown = _get(loaded, "/deliveries", channel="webhook.nope")
    assert unknown.status_code == 404


def test_channels_disable_and_enable_gate_the_outbox(loaded: ApiHarness) -> None:
    store = loaded.ctx.store
    [ch] = _get(loaded, "/channels").json()["items"]
    assert (ch["name"], ch["kind"], ch["disabled"]) == ("webhook.sales", "webhook", False)
    assert ch["deliveries"] == {"pending": 2}
    assert "url" not in ch
    off = _post(loaded, "/channels/webhook.sales/disable", json={"reason": "receiver down"})
    assert off.status_code == 200, off.text
    assert (off.json()["disabled"], off.json()["reason"]) == (True, "receiver down")
    assert store.claim_deliveries(10, 30) == []
    on = _post(loaded, "/channels/webhook.sales/enable")
    assert on.json()["disabled"] is False
    assert len(store.claim_deliveries(10, 30)) == 2
    assert [e.detail for e in _actions(loaded, "channel.disable")] == [{"reason": "receiver down"}]
    assert _actions(loaded, "channel.enable")
    assert _post(loaded, "/channels/webhook.nope/enable").status_code == 404
    assert _post(loaded, "/channels/webhook.sales/enable", "viewer").status_code == 403


def test_cursor_reset_for_a_backfill_keeps_the_live_cursor(api: ApiHarness) -> None:
    store = api.ctx.store
    store.set_cursor("leads", "s1", {"row": 50})
    reset = {"stream": "s1", "value": {"row": 10}, "reason": "backfill March"}
    refused = _post(api, "/pipelines/leads/cursors/reset", json=reset)
    assert refused.status_code == 409
    assert refused.json()["code"] == "pipeline_not_paused"
    _post(api, "/pipelines/leads/pause")

    r = _post(api, "/pipelines/leads/cursors/reset", json=reset)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "stream": "s1",
        "previous": {"row": 50},
        "value": {"row": 10},
        "saved": {"row": 50},
    }
    assert store.get_cursor("leads", "s1") == {"row": 10}
    # the backfill moves on; a second reset does not overwrite the saved live position
    store.set_cursor("leads", "s1", {"row": 30})
    again = _post(api, "/pipelines/leads/cursors/reset", json={"stream": "s1", "value": None})
    assert again.json()["saved"] == {"row": 50}
    assert store.get_cursor("leads", "s1") is None
    [c] = _get(api, "/pipelines/leads/cursors").json()["items"]
    assert (c["stream"], c["value"], c["saved"]["value"]) == ("s1", None, {"row": 50})

    restored = _post(api, "/pipelines/leads/cursors/restore", json={"stream": "s1"})
    assert restored.json() == {"stream": "s1", "value": {"row": 50}}
    assert store.get_cursor("leads", "s1") == {"row": 50}
    [c] = _get(api, "/pipelines/leads/cursors").json()["items"]
    assert (c["value"], c["saved"]) == ({"row": 50}, None)
    missing = _post(api, "/pipelines/leads/cursors/restore", json={"stream": "s1"})
    assert missing.status_code == 404
    # a stream without a cursor is restored to "no cursor"
    _post(api, "/pipelines/leads/cursors/reset", json={"stream": "s2", "value": {"row": 5}})
    assert _post(api, "/pipelines/leads/cursors/restore", json={"stream": "s2"}).json() == {
        "stream": "s2",
        "value": None,
    }
    assert store.get_cursor("leads", "s2") is None
    [entry, *_] = _actions(api, "cursor.reset")
    assert entry.detail["stream"] == "s2"
    assert len(_actions(api, "cursor.restore")) == 2


def test_the_next_run_resumes_from_the_reset_point(api: ApiHarness) -> None:
    _drop(api, "part.csv")
    path = api.root / "inbox" / "part.csv"
    point = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "row": 3}
    _post(api, "/pipelines/leads/pause")
    r = _post(api, "/pipelines/leads/cursors/reset", json={"stream": str(path), "value": point})
    assert r.json()["saved"] == {}
    _post(api, "/pipelines/leads/resume")
    summary = _run(api)
    # rows 4 and 5 only: both are quarantined, and nothing of rows 1-3 is stored
    assert (summary["read"], summary["stored"], summary["quarantined"]) == (2, 0, 2)
    assert api.ctx.store.counts("leads")["records"] == 0


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/pipelines/nope", "pipeline_not_found"),
        ("/pipelines/nope/records", "pipeline_not_found"),
        ("/pipelines/nope/cursors", "pipeline_not_found"),
        ("/pipelines/leads/records/leads:nope:1", "record_not_found"),
        ("/runs/424242", "run_not_found"),
        ("/runs?pipeline=nope", "pipeline_not_found"),
        ("/quarantine/424242", "quarantine_not_found"),
        ("/deliveries/nope:webhook_sales", "delivery_not_found"),
    ],
)
def test_unknown_names_and_ids_are_404_problems(
    api_sqlite: ApiHarness, path: str, code: str
) -> None:
    r = _get(api_sqlite, path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


@pytest.mark.parametrize(
    "path",
    [
        "/pipelines/nope/run",
        "/pipelines/nope/pause",
        "/quarantine/424242/replay",
        "/channels/webhook.nope/enable",
    ],
)
def test_actions_on_unknown_targets_are_404(api_sqlite: ApiHarness, path: str) -> None:
    r = _post(api_sqlite, path)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_cursors_of_other_lists_and_garbage_are_rejected(loaded: ApiHarness) -> None:
    first = _get(loaded, "/pipelines/leads/records", limit=1).json()
    assert first["next"]
    assert _get(loaded, "/runs", cursor=first["next"]).status_code == 400
    for bad in ("not-base64!", "e30", "eyJrIjoicnVucyIsImEiOnRydWV9"):
        r = _get(loaded, "/runs", cursor=bad)
        assert r.status_code == 400
        assert r.json()["code"] == "invalid_cursor"
    assert _get(loaded, "/runs", limit=501).status_code == 422


def test_a_nul_byte_in_a_lookup_is_a_client_error_on_both_stores(api: ApiHarness) -> None:
    # PostgreSQL refuses NUL in text; the answer must be a problem, never a server error
    with api.http() as h:
        r = h.get("/api/v1/deliveries/a%00b", headers=api.headers("viewer"))
    assert r.status_code in (400, 404), r.text
    assert r.headers["content-type"] == "application/problem+json"
