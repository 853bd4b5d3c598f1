"""Issue 11 fault suite: PostgreSQL restarted while the hub runs against it.

The store is a *private* server (``private_pg.py``; the machine's shared one is never touched).
Each seed drops a lead file, starts the hub in a child (run every pipeline once, then deliver to
a webhook receiver), and restarts the server at a random point of an undisturbed run's duration:
a fast shutdown (sessions ended, clean checkpoint) or an immediate one (a crash: the next start
replays the WAL), down for a random moment.  Then:

- the child finished, or failed with a typed ``JunctionError`` (nothing untyped, no hang);
- a rerun with the server up finishes, ``junction reconcile`` is clean (every row a record or in
  quarantine, every record scored, no delivery acknowledged twice, nothing in flight);
- the receiver got every delivered delivery once per ``webhook-id`` and nothing else.

Seeds run in ``PROCS`` processes, each against its own server, one seed after the other.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from junction.store.repo import Store
from junction.store.tables import metadata
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.faults.private_pg import PrivatePg
from tests.faults.support import (
    PROCS,
    SEEDS,
    finish_typed_child,
    map_seeds,
    reconciled,
    start_typed_child,
)
from tests.integration.helpers import rows_of, write_config

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(900)]
ROWS = 80


def _empty(url: str) -> None:
    store = Store.open(url)  # migrates the first time
    try:
        with store.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names}"))
    finally:
        store.close()


def _one(root: Path, server: PrivatePg, models: Path, seed: int, span: float) -> str | None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    _empty(server.url)
    secret = generate_secret()
    with WebhookSink(secret, root / "sink.jsonl") as sink:
        cfg = write_config(
            root,
            store=server.url,
            url=sink.url,
            secret=secret,
            models=models,
            batch=rng.choice([10, 40, 500]),
            lease=0.5,
            schedule="[0.01, 0.05, 0.1, 0.2]",
        )
        write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=seed, messy=True)
        mode = rng.choice(["fast", "immediate"])
        pid, report = start_typed_child(cfg)
        time.sleep(rng.uniform(0.0, span))
        server.stop(mode)
        time.sleep(rng.uniform(0.0, 0.3))
        server.start()
        code, error = finish_typed_child(pid, report)
        if code not in (0, 3):
            return f"the run during a {mode} restart exited {code}: {error}"
        pid, report = start_typed_child(cfg, drain_wait_s=1.0)
        code, again = finish_typed_child(pid, report)
        if code != 0:
            return f"the rerun after a {mode} restart exited {code}: {again}"
        r = reconciled(server.url)
        if not r.clean or r.expected != ROWS or r.in_flight_deliveries or r.dead_deliveries:
            return f"reconciliation after a {mode} restart: {r.as_dict()}"
        sent = [line["webhook_id"] for line in read_sink_file(root / "sink.jsonl")]
        delivered = {
            d
            for d, s in rows_of(server.url, "SELECT id, status FROM deliveries")
            if s == "delivered"
        }
        if len(sent) != len(set(sent)) or set(sent) != delivered:
            return f"the receiver got {len(sent)} ({len(set(sent))} ids) for {len(delivered)}"
    return None


def _group(
    root: Path, server: PrivatePg, models: Path, seeds: list[int], span: float
) -> list[tuple[int, str | None]]:
    return [(seed, _one(root / f"s{seed}", server, models, seed, span)) for seed in seeds]


def _span(root: Path, server: PrivatePg, models: Path) -> float:
    """How long an undisturbed run takes against a private server (restarts land within it)."""
    root.mkdir(parents=True)
    _empty(server.url)
    secret = generate_secret()
    with WebhookSink(secret, root / "sink.jsonl") as sink:
        cfg = write_config(root, store=server.url, url=sink.url, secret=secret, models=models)
        write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=99_999)
        started = time.monotonic()
        code, error = finish_typed_child(*start_typed_child(cfg))
        assert code == 0, error
        return time.monotonic() - started


def test_postgres_restarted_mid_run(
    tmp_path: Path, models_dir: Path, private_pgs: list[PrivatePg]
) -> None:
    span = _span(tmp_path / "probe", private_pgs[0], models_dir)
    groups = [list(range(k, SEEDS, len(private_pgs))) for k in range(len(private_pgs))]
    calls = [
        (tmp_path, server, models_dir, g, span)
        for server, g in zip(private_pgs, groups, strict=True)
    ]
    started = time.monotonic()
    outcomes = [o for group in map_seeds(_group, calls) for o in group]
    bad = [f"seed {seed}: {problem}" for seed, problem in outcomes if problem]
    assert len(outcomes) == SEEDS
    assert not bad, "\n".join(bad)
    assert time.monotonic() - started < 60 + SEEDS * 6 / max(1, min(PROCS, len(private_pgs)))
