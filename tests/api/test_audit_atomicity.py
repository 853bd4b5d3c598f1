"""An audited change and its audit entry commit together or not at all (RELIABILITY case 47).

The audit log's writes are made to fail inside the database (a trigger refuses inserts into
``audit_log``): every admin action below must then answer a server error and leave the state it
would have changed as it was, on SQLite and PostgreSQL. With the trigger gone, the same calls
change the state and write exactly one entry each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from junction.api.audit import audit_log_of
from junction.store import tables as t
from junction.store.audit import AuditLog
from junction.store.suppressions import SuppressionList
from tests.api.harness import ApiHarness
from tests.integration.helpers import insert_alert

V1 = "/api/v1"
ALERT = "leads:L-9:slack_ops"
ADDRESS = "ada@example.com"


@contextmanager
def audit_refused(api: ApiHarness) -> Iterator[None]:
    """Inserts into ``audit_log`` fail in the database until the block ends."""
    engine = api.ctx.store.engine
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            conn.execute(
                text(
                    "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit store refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit store refused'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION audit_down()"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            if sqlite:
                conn.execute(text("DROP TRIGGER audit_down"))
            else:
                conn.execute(text("DROP TRIGGER audit_down ON audit_log"))
                conn.execute(text("DROP FUNCTION audit_down()"))


def call(api: ApiHarness, method: str, path: str, role: str, **kw: Any) -> httpx.Response:
    with api.http() as h:
        return h.request(method, f"{V1}{path}", headers=api.headers(role), **kw)


def channel_disabled(api: ApiHarness) -> bool:
    return "webhook.sales" in api.ctx.store.disabled_endpoints()


def acked(api: ApiHarness) -> bool:
    with api.ctx.store.begin() as conn:
        at = conn.execute(select(t.deliveries.c.ack_at).where(t.deliveries.c.id == ALERT))
        return at.scalar_one() is not None


def suppressed(api: ApiHarness) -> bool:
    pseudonyms = audit_log_of(api.ctx).pseudonymizer
    assert pseudonyms is not None
    sl = SuppressionList(api.ctx.store, pseudonyms)
    return bool(sl.suppressed("email", [ADDRESS]))


def outcome_recorded(api: ApiHarness) -> bool:
    with api.ctx.store.begin() as conn:
        return conn.execute(select(t.outcomes.c.record_id)).first() is not None


OUTCOME = [
    {
        "record_id": "leads:L-9",
        "kind": "converted",
        "label": 1,
        "observed_at": "2026-12-01T10:00:00Z",
    }
]
# (what it does, the request, what the state reads before -> after, its audit action)
ACTIONS: list[tuple[str, tuple[str, str, str, dict[str, Any]], Callable[..., bool], str]] = [
    (
        "disable a channel",
        ("POST", "/channels/webhook.sales/disable", "operator", {"json": {"reason": "maint"}}),
        channel_disabled,
        "channel.disable",
    ),
    (
        "acknowledge an alert",
        ("POST", f"/deliveries/{ALERT}/ack", "operator", {}),
        acked,
        "delivery.ack",
    ),
    (
        "suppress an address",
        ("POST", "/suppressions", "operator", {"json": {"kind": "email", "address": ADDRESS}}),
        suppressed,
        "suppression.add",
    ),
    (
        "record outcomes",
        ("POST", "/outcomes", "operator", {"json": OUTCOME}),
        outcome_recorded,
        "outcomes.record",
    ),
]


@pytest.fixture
def audited(api: ApiHarness) -> ApiHarness:
    insert_alert(api.ctx.store, ALERT, "leads:L-9")
    return api


def entries(api: ApiHarness, action: str) -> int:
    return len(AuditLog(api.ctx.store).query(action=action))


@pytest.mark.parametrize(("what", "request_", "state", "action"), ACTIONS, ids=lambda v: v)
def test_no_change_without_its_audit_entry(
    audited: ApiHarness,
    what: str,
    request_: tuple[str, str, str, dict[str, Any]],
    state: Callable[[ApiHarness], bool],
    action: str,
) -> None:
    method, path, role, kw = request_
    api = audited
    assert not state(api), what
    api.headers(role)  # the client and its token (creating a client is audited too)
    with audit_refused(api):
        failed = call(api, method, path, role, **kw)
    assert failed.status_code >= 500, failed.text
    assert failed.headers["content-type"] == "application/problem+json"
    assert not state(api), f"{what}: changed without an audit entry"
    assert entries(api, action) == 0
    done = call(api, method, path, role, **kw)
    assert done.status_code == 200, done.text
    assert state(api), what
    assert entries(api, action) == 1


def test_lifting_a_suppression_stays_when_its_audit_entry_cannot_be_written(
    audited: ApiHarness,
) -> None:
    api = audited
    add = call(api, "POST", "/suppressions", "operator", json={"kind": "email", "address": ADDRESS})
    assert add.status_code == 200
    api.headers("admin")  # the client and its token (creating a client is audited too)
    with audit_refused(api):
        failed = call(api, "DELETE", f"/suppressions/email/{ADDRESS}", "admin")
    assert failed.status_code >= 500, failed.text
    assert suppressed(api)
    assert entries(api, "suppression.lift") == 0
    assert call(api, "DELETE", f"/suppressions/email/{ADDRESS}", "admin").status_code == 200
    assert not suppressed(api)
    assert entries(api, "suppression.lift") == 1
