"""The audit log over HTTP: token attempts audited without secrets, admin reads and verification,
helpers that take actor and request id from the request, and a flush on shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from sqlalchemy import select, update

from junction.api.app import create_app
from junction.api.audit import audit_action, audit_buffer_of, audit_decision
from junction.api.context import ApiContext
from junction.api.policy import ADMIN, SCORE, Principal
from junction.core.pseudonym import Pseudonymizer
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.store.audit import AuditLog
from junction.store.repo import Store
from junction.store.tables import audit_log
from tests.api.harness import ApiHarness, running_api, serve_app, write_api_config


def token_request(api: ApiHarness, client_id: str, secret: str) -> httpx.Response:
    with api.http() as h:
        return h.post(
            "/api/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )


def audit_rows(store: Store) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


def wait_for(store: Store, action: str, n: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in audit_rows(store) if r["action"] == action]
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"no {action} entry was written"
        time.sleep(0.05)


def test_token_failures_and_issues_are_audited_without_secrets(api: ApiHarness) -> None:
    client, secret = api.clients.create("audited", ["viewer"])
    wrong = "wrong-secret-that-must-never-be-stored"
    assert token_request(api, client.id, wrong).status_code == 401
    assert token_request(api, "jc_nobody", wrong).status_code == 401
    assert token_request(api, client.id, secret).status_code == 200
    denied = wait_for(api.ctx.store, "auth.token_denied", 2)
    assert {r["actor"] for r in denied} == {client.id, "jc_nobody"}
    assert all(r["target"] == "oauth/token" for r in denied)
    assert all(r["request_id"] for r in denied)
    issued = wait_for(api.ctx.store, "auth.token_issued")
    assert [r["target"] for r in issued] == [client.id]
    everything = str(audit_rows(api.ctx.store))
    assert wrong not in everything
    assert secret not in everything
    assert AuditLog(api.ctx.store).verify() is None


def test_an_email_typed_as_client_id_is_stored_as_a_pseudonym(api_sqlite: ApiHarness) -> None:
    assert token_request(api_sqlite, "Ann.Lee@example.com", "x").status_code == 401
    (row,) = wait_for(api_sqlite.ctx.store, "auth.token_denied")
    assert "example.com" not in str(row)
    state = Path(api_sqlite.ctx.cfg.models_dir).parent
    assert row["actor"] == Pseudonymizer.load(state).of("email", "ann.lee@example.com")


def test_admins_read_filter_and_page_the_log(api: ApiHarness) -> None:
    log = AuditLog(api.ctx.store)
    for i in range(5):
        log.append("jc_ops", "quarantine.replay", f"q:{i}", f"r{i}", {"n": i})
    log.append("jc_other", "channel.disable", "webhook.sales")
    admin = api.headers("admin")  # creating the admin client adds a client.create entry
    with api.http() as h:
        page1 = h.get("/api/v1/audit", headers=admin, params={"action": "quarantine.*", "limit": 3})
        assert page1.status_code == 200, page1.text
        body1 = page1.json()
        page2 = h.get(
            "/api/v1/audit",
            headers=admin,
            params={"action": "quarantine.*", "limit": 3, "before_id": body1["next_before_id"]},
        ).json()
        by_actor = h.get("/api/v1/audit", headers=admin, params={"actor": "jc_other"}).json()
        future = h.get("/api/v1/audit", headers=admin, params={"since": time.time() + 60}).json()
        bad = h.get("/api/v1/audit", headers=admin, params={"limit": 0})
        viewer = h.get("/api/v1/audit", headers=api.headers("viewer"))
    assert [e["target"] for e in body1["items"]] == ["q:4", "q:3", "q:2"]
    assert [e["target"] for e in page2["items"]] == ["q:1", "q:0"]
    assert page2["next_before_id"] is None
    assert body1["items"][0]["detail"] == {"n": 4}
    assert body1["items"][0]["request_id"] == "r4"
    assert [e["action"] for e in by_actor["items"]] == ["channel.disable"]
    assert future["items"] == []
    assert bad.status_code == 422
    assert viewer.status_code == 403


def test_verify_reports_an_intact_chain_then_the_first_altered_entry(api: ApiHarness) -> None:
    log = AuditLog(api.ctx.store)
    for i in range(4):
        log.append("jc_ops", "channel.disable", f"webhook.{i}")
    admin = api.headers("admin")
    with api.http() as h:
        ok = h.get("/api/v1/audit/verify", headers=admin).json()
        assert ok["ok"] is True
        assert ok["first_broken_id"] is None
        assert ok["entries"] >= 4
        assert len(ok["head_hash"]) == 64
        target = log.query(target="webhook.1")[0].id
        with api.ctx.store.begin() as conn:
            conn.execute(
                update(audit_log).where(audit_log.c.id == target).values(actor="jc_innocent")
            )
        broken = h.get("/api/v1/audit/verify", headers=admin).json()
    assert broken["ok"] is False
    assert broken["first_broken_id"] == target
    assert broken["head_hash"] is None


@contextmanager
def app_with_test_routes(root: Path, models: Path) -> Iterator[ApiHarness]:
    """The real app plus two routes that audit through the helpers (as route modules do)."""
    cfg_path = write_api_config(root, store=f"sqlite:///{root / 'j.db'}", models=models)
    cfg = load_config(cfg_path)
    hub = Hub(cfg)
    ctx = ApiContext(cfg=cfg, hub=hub, config_path=cfg_path)
    app = create_app(ctx)

    def replay(
        qid: int, request: Request, _: Annotated[Principal, Depends(ADMIN)]
    ) -> dict[str, int]:
        with ctx.store.begin() as conn:  # the action and its audit entry in one transaction
            rec = audit_action(
                request, "quarantine.replay", f"q:{qid}", {"email": "a@b.co"}, conn=conn
            )
        return {"audit_id": rec.id}

    async def disable(name: str, request: Request, _: Annotated[Principal, Depends(ADMIN)]) -> None:
        # an async route records in a worker thread; the request still names actor and id
        await asyncio.to_thread(audit_action, request, "channel.disable", name)

    async def score(request: Request, _: Annotated[Principal, Depends(SCORE)]) -> None:
        audit_decision(request, "score.lead", "lead:1", {"score": 0.9, "email": "a@b.co"})

    app.add_api_route("/test/replay/{qid}", replay, methods=["POST"])
    app.add_api_route("/test/disable/{name}", disable, methods=["POST"])
    app.add_api_route("/test/score", score, methods=["POST"])
    try:
        with serve_app(app) as url:
            yield ApiHarness(url, app, ctx, root)
    finally:
        hub.close()


def test_helpers_take_actor_and_request_id_from_the_request(
    tmp_path: Path, models_dir: Path
) -> None:
    with app_with_test_routes(tmp_path, models_dir) as api:
        key = api.api_key("admin")
        headers = {"X-API-Key": key, "X-Request-ID": "req-helpers-1"}
        with api.http() as h:
            r1 = h.post("/test/replay/7", headers=headers)
            r2 = h.post("/test/disable/webhook.sales", headers=headers)
            r3 = h.post("/test/score", headers={"X-API-Key": key, "X-Request-ID": "req-score"})
        assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 200)
        decision = wait_for(api.ctx.store, "score.lead")[0]
        rows = {r["action"]: r for r in audit_rows(api.ctx.store)}
    client_id = key[3:].split(".")[0]
    replay = rows["quarantine.replay"]
    assert r1.json()["audit_id"] == replay["id"]
    assert (replay["actor"], replay["target"], replay["request_id"]) == (
        client_id,
        "q:7",
        "req-helpers-1",
    )
    assert "a@b.co" not in replay["detail"]
    assert rows["channel.disable"]["actor"] == client_id
    assert (decision["actor"], decision["request_id"]) == (client_id, "req-score")
    assert "a@b.co" not in decision["detail"]


def test_buffered_entries_are_flushed_when_the_app_shuts_down(
    tmp_path: Path, models_dir: Path
) -> None:
    cfg = write_api_config(tmp_path, store=f"sqlite:///{tmp_path / 'j.db'}", models=models_dir)
    with running_api(cfg) as api:
        audit_buffer_of(api.ctx, interval_s=3600)  # only a shutdown will flush it
        for _ in range(3):
            assert token_request(api, "jc_ghost", "nope").status_code == 401
        time.sleep(0.3)
        assert not [r for r in audit_rows(api.ctx.store) if r["action"] == "auth.token_denied"]
    store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        denied = [r for r in audit_rows(store) if r["action"] == "auth.token_denied"]
        assert len(denied) == 3
        assert AuditLog(store).verify() is None
    finally:
        store.close()


def test_odd_query_values_are_answered_never_a_server_error(api: ApiHarness) -> None:
    admin = api.headers("admin")
    cases: list[tuple[dict[str, str | int], int]] = [
        ({"before_id": 99_999_999_999}, 422),
        ({"before_id": 2**31 - 1}, 200),
        ({"since": "inf"}, 200),
        ({"until": "-inf"}, 200),
        ({"action": "%_\\*"}, 200),
        ({"actor": "bad\x00actor"}, 422),
        ({"target": "x" * 700}, 422),
        ({"limit": 1000}, 200),
    ]
    with api.http() as h:
        got = [h.get("/api/v1/audit", headers=admin, params=p).status_code for p, _ in cases]
    assert got == [code for _, code in cases]


def test_hostile_client_ids_are_unknown_clients_not_server_errors(api: ApiHarness) -> None:
    for client_id in ("jc_\x00nul", "x" * 200, "'; DROP TABLE api_clients; --"):
        assert token_request(api, client_id, "secret").status_code == 401
    too_long = token_request(api, "x" * 5000, "secret")  # over the form field limit
    assert too_long.status_code in (400, 422)
    assert too_long.headers["content-type"] == "application/problem+json"
    with api.http() as h:
        r = h.get("/api/v1/audit", headers={"X-API-Key": "jk_jc_%00';--.secret"})
    assert r.status_code == 401
    denied = wait_for(api.ctx.store, "auth.token_denied", 3)
    assert all("\x00" not in r["actor"] and len(r["actor"]) <= 64 for r in denied)
    assert AuditLog(api.ctx.store).verify() is None
