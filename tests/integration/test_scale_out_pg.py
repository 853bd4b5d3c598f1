"""Several delivery worker processes share one outbox on PostgreSQL (issue 8, shared state).

Each worker is a real process running the delivery loop as ``junction serve`` runs it
(``tests.integration.scale_out_procs``); they claim with ``FOR UPDATE SKIP LOCKED`` and lease
what they claim.  The receiver records every ``webhook-id``:

* two and three workers drain 5,000 deliveries and each one arrives exactly once (the leases are
  far longer than any send, so no lease expires and no at-least-once resend is allowed);
* a worker killed with SIGKILL mid-drain leaves its leased rows to the others once the leases end:
  everything arrives, and the only duplicates are sends of the killed worker that it had not
  recorded (at-least-once), bounded by what one worker can have unrecorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from junction.pipeline.deliver import RECORD_BATCH
from junction.store import tables as t
from junction.store.outbox import endpoint_health
from junction.store.repo import Store

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
N = 5000
ENDPOINTS = 4
CONCURRENCY = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _module(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.scale_out_procs", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def receiver() -> Iterator[str]:
    """The base URL of a receiver process recording every webhook-id."""
    port = _free_port()
    proc = _module("receiver", str(port))
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.communicate()


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    """The PostgreSQL store, migrated before any worker starts."""
    s = Store.open(pg_url)
    yield s
    s.close()


class Workers:
    """``n`` delivery worker processes on one store."""

    def __init__(self, n: int, store_url: str, base: str, lease_s: float) -> None:
        args = (store_url, base, SECRET, str(ENDPOINTS), str(CONCURRENCY), str(lease_s))
        self.procs = [_module("deliver", *args) for _ in range(n)]

    def wait_ready(self, timeout: float = 30) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()  # the worker prints "ready" once started
            assert line == "ready", proc.communicate(timeout=timeout)[1][-3000:]

    def stop(self) -> list[int | None]:
        """SIGTERM the live ones; return each one's ``delivered`` count (None: was killed)."""
        counts: list[int | None] = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            out, err = proc.communicate(timeout=30)
            if proc.returncode == -signal.SIGKILL:
                counts.append(None)
                continue
            assert proc.returncode == 0, err[-3000:]
            counts.append(int(out.split("delivered ", 1)[1].split()[0]))
        return counts

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.communicate(timeout=5)


def _fill(store: Store, n: int) -> list[str]:
    """``n`` pending deliveries over ``ENDPOINTS`` webhook channels, due now; their ids."""
    token = uuid.uuid4().hex[:8]
    ids = [f"msg-{token}-{i:06d}" for i in range(n)]
    now = time.time()
    rows = [
        {
            "id": msg_id,
            "record_id": f"lead-{i:06d}",
            "pipeline": "scale-out",
            "channel": f"webhook.e{i % ENDPOINTS}",
            "event_type": "lead.scored",
            "payload": f'{{"type":"lead.scored","n":{i}}}',
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now - 1 + i * 1e-6,
            "created_at": now,
        }
        for i, msg_id in enumerate(ids)
    ]
    with store.begin() as conn:
        conn.execute(t.deliveries.insert(), rows)
    return ids


def _scalar(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


DELIVERED = "SELECT count(*) FROM deliveries WHERE status = 'delivered'"


def _received(base: str) -> tuple[list[str], list[float]]:
    stats: dict[str, Any] = httpx.get(f"{base}/stats", timeout=10).json()
    return stats["ids"], stats["times"]


def _wait_delivered(store: Store, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _scalar(store, DELIVERED) < n:
        assert time.monotonic() < deadline, "the outbox was not drained in time"
        time.sleep(0.05)


def _drain_rate(store: Store) -> float:
    """Deliveries/s from the first attempt's start to the last delivery (store clocks)."""
    first = _scalar(store, "SELECT floor(min(started_at) * 1000) FROM attempts")
    last = _scalar(store, "SELECT ceil(max(delivered_at) * 1000) FROM deliveries")
    return N / max(0.001, (last - first) / 1000)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_drain_one_outbox_each_delivery_sent_once(
    pg_url: str, store: Store, receiver: str, workers: int
) -> None:
    pool = Workers(workers, pg_url, receiver, lease_s=60.0)
    try:
        pool.wait_ready()
        ids = _fill(store, N)
        _wait_delivered(store, N, timeout=40)
        counts = pool.stop()
    finally:
        pool.kill_all()
    got, _ = _received(receiver)
    seen = Counter(got)
    assert set(seen) == set(ids)
    assert [i for i, c in seen.items() if c > 1] == []  # no lease expired: nothing sent twice
    assert len(got) == N
    # the store agrees: every delivery delivered at its first attempt, one attempt row each
    assert _scalar(store, DELIVERED) == N
    assert _scalar(store, "SELECT sum(attempts) FROM deliveries") == N
    assert _scalar(store, "SELECT count(*) FROM attempts WHERE outcome = 'delivered'") == N
    assert _scalar(store, "SELECT count(*) FROM deliveries WHERE lease_until IS NOT NULL") == 0
    # every worker took a share (each reports what it delivered)
    assert sum(c or 0 for c in counts) == N
    assert all(c for c in counts), counts
    rate = _drain_rate(store)
    print(f"\n{workers} worker process(es): {rate:,.0f} deliveries/s, shares {counts}")


def test_a_killed_worker_leaves_its_leases_to_the_others(
    pg_url: str, store: Store, receiver: str
) -> None:
    lease_s = 3.0
    pool = Workers(3, pg_url, receiver, lease_s=lease_s)
    try:
        pool.wait_ready()
        ids = _fill(store, N)
        deadline = time.monotonic() + 30
        while _scalar(store, DELIVERED) < N // 4:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
        victim = pool.procs[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        _wait_delivered(store, N, timeout=30)
        finished_at = time.time()
        counts = pool.stop()
    finally:
        pool.kill_all()
    got, times = _received(receiver)
    seen = Counter(got)
    assert set(seen) == set(ids)  # nothing lost
    assert max(seen.values()) <= 2
    dupes = [i for i, c in seen.items() if c > 1]
    first_at: dict[str, float] = {}
    for msg_id, at in zip(got, times, strict=True):
        first_at.setdefault(msg_id, at)
    # a resend is of a delivery the killed worker had sent but not recorded: sent before the kill
    assert all(first_at[i] <= killed_at for i in dupes)
    # and there are at most as many as one worker can have sent and not yet recorded: its sends
    # in flight plus the outcomes queued for (and taken by) its recorder
    queue = max(64, 4 * CONCURRENCY)
    assert len(dupes) <= CONCURRENCY + 2 * min(queue, RECORD_BATCH) + 1
    assert counts[0] is None
    assert all(counts[1:]), counts
    assert _scalar(store, DELIVERED) == N
    # the killed worker's leases ended lease_s after its last claim; the rest followed at once
    assert finished_at - killed_at < lease_s + 10
    print(f"\nSIGKILL mid-drain: {len(dupes)} resent, drained {finished_at - killed_at:.1f}s later")


def _ok(delivery_id: str, channel: str, at: float, ok: bool = True) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "channel": channel,
        "pipeline": "scale-out",
        "attempt_no": 1,
        "started_at": at,
        "duration_ms": 0.0,
        "status_code": 200 if ok else 500,
        "error": None if ok else "UnavailableError: 500",
        "outcome": "delivered" if ok else "retry",
        "new_status": "delivered" if ok else "pending",
        "next_attempt_at": at,
        "health": "ok" if ok else "fail",
    }


def test_recording_successes_does_not_queue_behind_another_worker(store: Store) -> None:
    """The endpoint row was every recording's hot spot: two workers' recordings took turns on
    its lock (two workers drained slower than one).  A batch of successes writes it only when a
    failure streak ends or ``last_success_at`` moves by a second or more."""
    ch = "webhook.e0"
    _fill(store, 8)
    ids = [r["id"] for r in store.claim_deliveries(8, 60)]
    t0 = time.time()
    store.record_attempts([_ok(ids[0], ch, t0)], [])  # the endpoint's first outcome: its row
    # another worker's transaction holds the endpoint row's lock, as its recording does
    batch = [_ok(ids[1], ch, t0 + 0.2), _ok(ids[2], ch, t0 + 0.4)]
    recording = threading.Thread(target=store.record_attempts, args=(batch, []))
    with store.engine.connect() as other:
        other.execute(text("SELECT * FROM endpoints WHERE channel = :c FOR UPDATE"), {"c": ch})
        recording.start()
        recording.join(timeout=2.0)
        blocked = recording.is_alive()
        other.rollback()
    recording.join()
    assert not blocked  # it did not wait for the other transaction
    health = endpoint_health(store)[ch]
    assert health["last_success_at"] == t0  # kept to within SUCCESS_RESOLUTION_S
    store.record_attempts([_ok(ids[3], ch, t0 + 1.5)], [])
    assert endpoint_health(store)[ch]["last_success_at"] == t0 + 1.5
    # a failure starts a streak; the next success ends it, however soon it comes
    store.record_attempts([_ok(ids[4], ch, t0 + 1.6, ok=False)], [])
    assert endpoint_health(store)[ch]["failing_since"] == t0 + 1.6
    store.record_attempts([_ok(ids[5], ch, t0 + 1.7)], [])
    health = endpoint_health(store)[ch]
    assert (health["failing_since"], health["last_success_at"]) == (None, t0 + 1.7)
