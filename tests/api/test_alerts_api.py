"""Acknowledging alerts over real HTTP: 200 once, 409 after, 404 unknown, audited, OPERATE only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from junction.store import tables as t
from junction.store.audit import AuditLog
from tests.api.harness import ApiHarness
from tests.integration.helpers import insert_alert

V1 = "/api/v1"
DID = "leads:L-1:slack_ops"


@pytest.fixture
def alert(api: ApiHarness) -> ApiHarness:
    insert_alert(api.ctx.store, DID, "leads:L-1")
    return api


def test_ack_sets_ack_at_once_and_stops_escalation(alert: ApiHarness) -> None:
    with alert.http() as h:
        ok = h.post(f"{V1}/deliveries/{DID}/ack", headers=alert.headers("operator"))
        again = h.post(f"{V1}/deliveries/{DID}/ack", headers=alert.headers("operator"))
        unknown = h.post(f"{V1}/deliveries/nope:1/ack", headers=alert.headers("operator"))
        viewer = h.post(f"{V1}/deliveries/{DID}/ack", headers=alert.headers("viewer"))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["id"], body["status"], body["group_id"]) == (DID, "delivered", None)
    assert body["ack_at"] > 0
    assert again.status_code == 409
    assert again.json()["code"] == "already_acked"
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "delivery_not_found"
    assert viewer.status_code == 403
    with alert.ctx.store.begin() as conn:
        ack_at, escalate_at = conn.execute(
            select(t.deliveries.c.ack_at, t.deliveries.c.escalate_at).where(
                t.deliveries.c.id == DID
            )
        ).one()
    assert ack_at == body["ack_at"]
    assert escalate_at is None
    [entry] = AuditLog(alert.ctx.store).query(action="delivery.ack")
    assert entry.target == DID
