"""Issue 11 fault suite: receivers that hang, reset, answer slowly or with every error code.

``tests/faults/receiver.py`` is a hand-written HTTP/1.1 server on a raw asyncio socket; each
request gets a behaviour drawn from the seed: a 200, a slow 200, a hang (no answer until the
hub's timeout), a reset (RST) before answering, a 200 cut off by a reset after the receiver
stored the delivery, a hang after it stored it, or any status in ``STATUSES`` (redirects, 401,
403, 404, 408, 409, 410, 413, 422, 429 and 503 with Retry-After as seconds or an HTTP-date,
500, 502, 504).  The hub runs a lead file drop and delivers until nothing is pending (an
endpoint a 410 disabled is re-enabled by "the operator" between rounds).  Then:

- every delivery is ``delivered`` or ``dead`` with the reason recorded, none still pending;
- every delivered one is at the receiver (accepted under its ``webhook-id``), at most one
  delivered attempt each (the reconciliation's ``duplicate_sends``), and every one the receiver
  accepted more than once arrived again under the *same* key (so its dedupe absorbed it);
- the receiver holds nothing the outbox does not know;
- ``junction reconcile`` is clean (dead deliveries are in quarantine, replayable).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from junction.pipeline.hub import Hub
from scoring.synthetic import write_lead_csv
from tests.faults.receiver import FaultyReceiver
from tests.faults.support import SEEDS, map_seeds, reconciled
from tests.integration.helpers import rows_of, write_config

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
ROWS = 16
TIMEOUT_S = 0.25  # the hub's per-attempt timeout: a hang costs this much
ROUNDS = 8


def _seed(root: Path, models: Path, seed: int) -> str | None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    store_url = f"sqlite:///{root / 'j.db'}"
    with FaultyReceiver(random.Random(seed * 7919 + 1)) as receiver:
        cfg = write_config(
            root,
            store=store_url,
            url=receiver.url,
            secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
            models=models,
            batch=rng.choice([5, 16]),
            schedule="[0.01, 0.02, 0.05]",
        )
        cfg.write_text(cfg.read_text().replace("timeout_s: 5", f"timeout_s: {TIMEOUT_S}"))
        write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=seed, messy=rng.random() < 0.5)
        hub = Hub.from_file(cfg)
        try:
            hub.run_once()
            for _ in range(ROUNDS):
                hub.deliver(drain_wait_s=1.2)
                for channel in hub.store.disabled_endpoints():  # a 410 disabled it
                    hub.store.set_endpoint(channel, disabled=False, reason="fault test")
                if not _rows(store_url, "pending"):
                    break
        finally:
            hub.close()
        rows = rows_of(store_url, "SELECT id, status, last_error FROM deliveries")
        pending = [r for r in rows if r[1] not in ("delivered", "dead")]
        if pending:
            now = time.time()
            detail = [
                (d, n, round(due - now, 2), round((lease or now) - now, 2), err)
                for d, n, due, lease, err in rows_of(
                    store_url,
                    "SELECT id, attempts, next_attempt_at, lease_until, last_error "
                    "FROM deliveries WHERE status = 'pending'",
                )
            ]
            return f"{len(pending)} deliveries not finished after {ROUNDS} rounds: {detail[:3]}"
        no_reason = [r[0] for r in rows if r[1] == "dead" and not r[2]]
        if no_reason:
            return f"dead deliveries without a reason: {no_reason[:3]}"
        delivered = {r[0] for r in rows if r[1] == "delivered"}
        known = {r[0] for r in rows}
        if delivered - receiver.accepted:
            return f"delivered but not at the receiver: {sorted(delivered - receiver.accepted)[:3]}"
        if receiver.accepted - known:
            return f"the receiver holds unknown ids: {sorted(receiver.accepted - known)[:3]}"
        r = reconciled(store_url)
        if not r.clean or r.expected != ROWS or r.in_flight_deliveries:
            return f"reconciliation: {r.as_dict()}"
        if not rows:
            return "no deliveries at all"
    return None


def _rows(store_url: str, status: str) -> list[tuple[object, ...]]:
    return [r for r in rows_of(store_url, "SELECT id, status FROM deliveries") if r[1] == status]


def test_misbehaving_receivers_lose_and_duplicate_nothing(tmp_path: Path, models_dir: Path) -> None:
    started = time.monotonic()
    results = map_seeds(_seed, [(tmp_path / f"s{seed}", models_dir, seed) for seed in range(SEEDS)])
    problems = [f"seed {seed}: {p}" for seed, p in enumerate(results) if p]
    assert not problems, "\n".join(problems)
    # budget guard: a seed is meant to cost well under a second or two
    assert time.monotonic() - started < 60 + SEEDS * 4
