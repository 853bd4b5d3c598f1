"""The outbox under faults: claims given back, recordings retried without doubling attempts.

Claims a worker does not send are given back (found by the fault suite's faulty receiver).

The delivery worker drops a claimed row that it still holds (its outcome is being recorded in
the recorder's thread while the dispatcher's claim runs).  It used to drop it with its lease
still set, so the retry waited out the whole lease (60 s by default) instead of its schedule;
the worker now releases such claims, and a release only touches a lease it still owns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from junction.store import outbox
from junction.store.reconcile import reconcile
from junction.store.repo import Store
from tests.integration.delivery_support import enqueue


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    yield s
    s.close()


def test_a_released_claim_is_due_again_at_once(store: Store) -> None:
    enqueue(store, "webhook.a", ["a-1", "a-2"])
    rows = store.claim_deliveries(10, 60, slots={"webhook.a": 5})
    assert {r["id"] for r in rows} == {"a-1", "a-2"}
    assert store.claim_deliveries(10, 60, slots={"webhook.a": 5}) == []
    leases = [(r["id"], r["lease_until"]) for r in rows if r["id"] == "a-1"]
    assert outbox.release(store, leases) == 1
    again = store.claim_deliveries(10, 60, slots={"webhook.a": 5})
    assert [r["id"] for r in again] == ["a-1"]


def test_a_release_leaves_a_lease_it_no_longer_owns(store: Store) -> None:
    enqueue(store, "webhook.a", ["a-1"], at=0.5)
    [first] = store.claim_deliveries(10, 60, slots={"webhook.a": 5}, now=1.0)
    # the first lease ran out and another claim took the row: the stale release must not free it
    [second] = store.claim_deliveries(10, 60, slots={"webhook.a": 5})
    assert second["lease_until"] != first["lease_until"]
    assert outbox.release(store, [(first["id"], first["lease_until"])]) == 0
    assert store.claim_deliveries(10, 60, slots={"webhook.a": 5}) == []
    assert outbox.release(store, []) == 0


def _delivered(did: str, at: float) -> dict[str, Any]:
    return {
        "delivery_id": did,
        "channel": "webhook.a",
        "pipeline": "leads",
        "attempt_no": 1,
        "started_at": at,
        "duration_ms": 1.0,
        "status_code": 200,
        "error": None,
        "outcome": "delivered",
        "new_status": "delivered",
        "next_attempt_at": at,
        "health": "ok",
    }


def test_a_retried_recording_adds_no_second_attempt(store: Store) -> None:
    """Found by the fault suite's PostgreSQL restarts: the recorder's first try committed, the
    server went away before answering, and the retry stored every attempt again (the
    reconciliation counted each as acknowledged twice).  A retry now rechecks."""
    enqueue(store, "webhook.a", ["a-1", "a-2"])
    now = time.time()
    store.record_attempts([_delivered("a-1", now)], [])
    # the retry of that batch, now with a-2 too (it was not in the committed try)
    store.record_attempts([_delivered("a-1", now), _delivered("a-2", now)], [], recheck=True)
    rows = rows_of(store, "SELECT delivery_id, attempt_no FROM attempts ORDER BY delivery_id")
    assert rows == [("a-1", 1), ("a-2", 1)]
    assert reconcile(store, "leads", scored=False).duplicate_sends.count == 0


def rows_of(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store.begin() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]
