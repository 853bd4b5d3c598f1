"""One scheduler leads each pipeline (issue 8, shared state): the run lease in ``schedules``.

* Two ``junction serve`` processes on PostgreSQL poll one slow source every second: each slot
  fires once, the pipeline never runs in both at once, the cursor only moves forward, and when
  the process running it is SIGKILLed mid-run the other resumes the run at once (same host: the
  dead pid is seen) and every record ends up stored once.
* A lease left by a process of another host (which cannot be checked from here) is waited for
  until its TTL ends, then taken over and its run resumed (SQLite and PostgreSQL).
* A run whose lease was taken over (it was not renewed in time) stops after its current batch.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text

from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.serve.leases import PipelineLeases
from junction.serve.scheduler import Scheduler
from junction.store.repo import Store
from tests.contract.fixtures.fake import write_lead_mapping, write_source
from tests.serve.helpers import Serve, wait_for, write_serve_config

PIPELINE = """\
  crm:
    source:
      connector: fake
      path: crm/source.jsonl
      streams: [leads]
      batch_size: {batch}
      latency_s: {latency}
      schedule: "{schedule}"
    mapping: fake_lead.yaml
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
"""
EVERY_SECOND = "* * * * * */1"
NEVER_SOON = "0 0 1 1 *"  # once a year: no slot falls due during a test


def _source(root: Path, n: int, *, batch: int, latency: float, schedule: str) -> str:
    write_lead_mapping(root)
    (root / "crm").mkdir()
    leads = [
        {"stream": "leads", "id": f"00Q{i:03d}", "updated_at": f"2026-12-01T10:{i // 60:02d}:"
         f"{i % 60:02d}Z", "email": f"l{i}@a.example"}
        for i in range(n)
    ]  # fmt: skip
    write_source(root / "crm" / "source.jsonl", leads)
    return PIPELINE.format(batch=batch, latency=latency, schedule=schedule)


def _one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _cursor(engine: Engine) -> tuple[str, str] | None:
    value = _one(engine, "SELECT value FROM cursors WHERE pipeline = 'crm'")
    return None if value is None else tuple(orjson.loads(value)["after"])


class CursorWatch:
    """Samples the pipeline's cursor every 20 ms in a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            value = _cursor(self.engine)
            if value is not None:
                self.seen.append(value)

    def close(self) -> list[tuple[str, str]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    Store.open(pg_url).close()  # migrate once, before processes race to
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def test_the_run_of_a_killed_leader_is_taken_over_at_once(
    tmp_path: Path, pg_url: str, pg_engine: Engine, models_dir: Path
) -> None:
    n = 40
    pipelines = _source(tmp_path, n, batch=2, latency=0.12, schedule=EVERY_SECOND)
    cfg = write_serve_config(tmp_path, store=pg_url, models=models_dir, pipelines=pipelines)
    watch = CursorWatch(pg_engine)
    with Serve(cfg) as a, Serve(cfg) as b:
        a.wait_ready()
        b.wait_ready()
        # the first run reads 20 batches of 2 (2.4 s): kill whoever runs it part-way
        wait_for(lambda: (c := _cursor(pg_engine)) and c[1] >= "00Q005", 20, "a few batches")
        owner = str(_one(pg_engine, "SELECT lease_owner FROM schedules WHERE pipeline = 'crm'"))
        pid = int(owner.split(":")[1])
        leader, other = (a, b) if pid == a.proc.pid else (b, a)
        assert pid == leader.proc.pid
        leader.proc.send_signal(signal.SIGKILL)
        leader.wait()
        killed_at = time.time()
        stored_at_kill = _one(pg_engine, "SELECT count(*) FROM records")
        assert stored_at_kill < n
        taken = other.wait_event("abandoned run taken over", timeout=5)
        wait_for(lambda: _one(pg_engine, "SELECT count(*) FROM records") == n, 20, "every record")
        resumed = _one(
            pg_engine,
            "SELECT min(started_at) FROM runs WHERE started_at > "
            "(SELECT min(started_at) FROM runs WHERE finished_at IS NULL)",
        )
        assert other.stop() == 0
    seen = watch.close()
    assert taken["pipeline"] == "crm"
    # taken over at the survivor's next tick (0.5 s): the dead pid is seen, no TTL (15 s) to wait
    assert resumed - killed_at < 3.0
    # a poll ran once per slot, across both processes
    slots = [f["slot"] for f in leader.find("schedule fired") + other.find("schedule fired")]
    assert len(slots) == len(set(slots))
    # never two runs at once: only the killed run is unfinished, and it ended at the kill
    with pg_engine.connect() as conn:
        rows = conn.execute(text("SELECT started_at, finished_at FROM runs ORDER BY started_at"))
        runs = [(float(s), float(f) if f is not None else killed_at) for s, f in rows]
    assert _one(pg_engine, "SELECT count(*) FROM runs WHERE finished_at IS NULL") == 1
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(runs))
    # the cursor only moved forward, and every record is stored once
    assert seen
    assert seen == sorted(seen)
    assert seen[-1] == ("2026-12-01T10:00:39Z", "00Q039")
    assert _one(pg_engine, "SELECT count(DISTINCT id) FROM records") == n
    assert _one(pg_engine, "SELECT count(*) FROM records") == n


def test_a_lease_of_another_host_is_waited_for_then_taken_over(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    pipelines = _source(tmp_path, 6, batch=2, latency=0.0, schedule=NEVER_SOON)
    cfg_path = write_serve_config(tmp_path, store=store_url, models=models_dir, pipelines=pipelines)
    hub = Hub(load_config(cfg_path))
    engine = create_engine(store_url)
    expires = time.time() + 1.5
    with engine.begin() as conn:
        # a process of another host fired a slot and died mid-run; its lease ends in 1.5 s
        conn.execute(
            text(
                "INSERT INTO schedules (pipeline, last_fired_at, lease_owner, lease_until) "
                "VALUES ('crm', :t, 'elsewhere:4242:0dead', :u)"
            ),
            {"t": time.time(), "u": expires},
        )
    scheduler = Scheduler(hub, PipelineLeases(hub.store, "here:1:me"), tick_s=0.05)

    async def go() -> tuple[int, float]:
        await asyncio.to_thread(scheduler.prepare)
        scheduler.start()
        await asyncio.sleep(max(0.0, expires - 0.3 - time.time()))
        before = _one(engine, "SELECT count(*) FROM runs")  # a live lease is not touched
        await asyncio.to_thread(
            wait_for, lambda: _one(engine, "SELECT count(*) FROM records") == 6, 10, "the run"
        )
        await asyncio.to_thread(wait_for, lambda: not scheduler._slots["crm"].busy, 5, "the end")
        await scheduler.stop(5)
        return before, float(_one(engine, "SELECT min(started_at) FROM runs"))

    try:
        before, started = asyncio.run(go())
        scheduler.close()
    finally:
        hub.close()
    try:
        assert before == 0
        assert expires <= started < expires + 1.0  # taken over once the TTL ended, not later
        assert _one(engine, "SELECT count(*) FROM runs") == 1  # and no slot fired besides
        assert _one(engine, "SELECT lease_owner FROM schedules") is None  # given back
    finally:
        engine.dispose()


def test_abandoned_leases(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        host = socket.gethostname()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        holders = {
            "expired": PipelineLeases(store, "elsewhere:1:a", ttl_s=10),
            "held": PipelineLeases(store, "elsewhere:2:b", ttl_s=600),
            "dead-local": PipelineLeases(store, f"{host}:{dead.pid}:c", ttl_s=600),
            "live-local": PipelineLeases(store, f"{host}:{os.getppid()}:d", ttl_s=600),
            "released": PipelineLeases(store, "elsewhere:3:e", ttl_s=600),
        }
        me = PipelineLeases(store, "here:1:me", ttl_s=600)
        names = [*holders, "mine", "never"]
        me.ensure(names, [], now=0.0)
        now = time.time()
        for name, leases in holders.items():
            assert leases.try_acquire(name, now=now - 20)
        assert me.try_acquire("mine", now=now - 20)
        holders["released"].release()
        assert me.abandoned(names, now=now) == {"expired", "dead-local"}
        assert me.abandoned([], now=now) == set()
        # what is abandoned is taken over with the usual compare-and-set
        assert me.try_acquire("expired", now=now)
        assert me.take_over_dead("dead-local", now=now)
        assert me.abandoned(names, now=now) == set()
    finally:
        store.close()


def test_a_run_whose_lease_was_taken_over_stops_after_its_batch(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    pipelines = _source(tmp_path, 30, batch=1, latency=0.05, schedule=NEVER_SOON)
    cfg_path = write_serve_config(tmp_path, store=store_url, models=models_dir, pipelines=pipelines)
    hub = Hub(load_config(cfg_path))
    engine = create_engine(store_url)
    leases = PipelineLeases(hub.store, "here:1:slow", ttl_s=0.6)  # renewed every 0.2 s
    scheduler = Scheduler(hub, leases, tick_s=0.05)

    async def go() -> list[int]:
        await asyncio.to_thread(scheduler.prepare)
        scheduler.start()
        assert scheduler.request_run("crm") == "queued"
        await asyncio.to_thread(wait_for, lambda: _cursor(engine), 10, "a committed batch")
        with engine.begin() as conn:  # another process took the lease over
            conn.execute(
                text("UPDATE schedules SET lease_owner = 'elsewhere:9:f', lease_until = :u"),
                {"u": time.time() + 600},
            )
        stopped_at = _one(engine, "SELECT count(*) FROM records")
        slot = scheduler._slots["crm"]
        await asyncio.to_thread(wait_for, lambda: not slot.busy, 5, "the run to stop")
        after = _one(engine, "SELECT count(*) FROM records")
        await scheduler.stop(5)
        return [stopped_at, after]

    try:
        stopped_at, after = asyncio.run(go())
        scheduler.close()
    finally:
        hub.close()
    try:
        # it stopped within a renewal period and a batch, far from the end of the source
        assert after - stopped_at <= 6
        assert after < 30
        assert _one(engine, "SELECT lease_owner FROM schedules") == "elsewhere:9:f"  # untouched
        assert _one(engine, "SELECT count(*) FROM runs WHERE finished_at IS NULL") == 0
    finally:
        engine.dispose()
