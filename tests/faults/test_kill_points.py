"""Issue 11 fault suite: SIGKILL the hub at random points of its work, across many seeds.

Each seed writes a lead file drop (messy rows included), runs ``run --once`` in a forked child
and SIGKILLs it after a random part of an undisturbed run's duration, so kills land while it
reads, prepares, commits, archives, claims, sends or records deliveries.  Then it runs again to
the end, and:

- ``junction reconcile``'s accounting is clean: every source row is a record or in quarantine,
  every record is scored, every delivery has its record, no delivery was acknowledged twice;
- the receiver got every delivery, once per idempotency key (a kill after the receiver's 200
  and before the outbox recorded it makes one resend with the same webhook-id, which the
  receiver recognizes: counted, never a new delivery).

The receiving end misbehaves in the second kind: per seed it fails the first attempts, answers
429 with Retry-After, 5xx or slowly.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.faults.support import (
    SEEDS,
    SeedOutcome,
    kill_at_random_point,
    reconciled,
    run_in_child,
    timed_run,
    wait_child,
)
from tests.integration.helpers import write_config

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
ROWS = 150


def _seed(
    root: Path, store_url: str, models: Path, seed: int, span: float, receiver_faults: bool
) -> SeedOutcome:
    rng = random.Random(seed)
    secret = generate_secret()
    root.mkdir(parents=True)
    with WebhookSink(secret, root / "sink.jsonl") as sink:
        if receiver_faults:
            kind = rng.choice(["fail_first", "429", "5xx", "slow"])
            if kind == "fail_first":
                sink.faults.fail_first = rng.randint(1, 2)
            elif kind == "429":
                sink.faults.fail_first = 1
                sink.faults.status = 429
                sink.faults.retry_after = "0"
            elif kind == "5xx":
                sink.faults.fail_first = 1
                sink.faults.status = rng.choice([500, 502, 503, 504])
            else:
                sink.faults.delay_s = rng.uniform(0.0, 0.02)
        cfg = write_config(
            root,
            store=store_url,
            url=sink.url,
            secret=secret,
            models=models,
            batch=rng.choice([25, 50, 100]),
            lease=0.5,
            schedule="[0.01, 0.02, 0.05]",
        )
        write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=seed, messy=True)
        at, code = kill_at_random_point(cfg, rng, span)
        sink.faults.fail_first, sink.faults.status, sink.faults.delay_s = 0, None, 0.0
        resumed = wait_child(run_in_child(cfg, drain_wait_s=1.0))
        outcome = SeedOutcome(seed, at, code)
        if resumed != 0:
            err = root / "child-error.txt"
            tail = err.read_text()[-1500:] if err.exists() else ""
            outcome.problem = f"the resumed run exited {resumed}: {tail}"
            return outcome
        r = reconciled(store_url)
        if not r.clean or r.expected != ROWS or r.in_flight_deliveries:
            outcome.problem = f"reconciliation: {r.as_dict()}"
            return outcome
        # the receiver holds exactly the delivered ones (a resend after a kill has the same
        # webhook-id and is recognized); the rest went dead and wait in quarantine for replay
        sent = [line["webhook_id"] for line in read_sink_file(root / "sink.jsonl")]
        delivered = _delivery_ids(store_url, "delivered")
        if len(sent) != len(set(sent)) or set(sent) != delivered:
            outcome.problem = (
                f"sink got {len(sent)} ({len(set(sent))} unique) of {len(delivered)} delivered; "
                f"missing: {sorted(delivered - set(sent))[:3]}, "
                f"not delivered: {_statuses(store_url, set(sent) - delivered)}"
            )
        elif not receiver_faults and r.dead_deliveries:
            outcome.problem = f"{r.dead_deliveries} deliveries went dead with a healthy receiver"
        return outcome


def _undisturbed_span(root: Path, models: Path) -> float:
    """How long an undisturbed run of a seed's file takes (kills land within 1.2x of it)."""
    secret = generate_secret()
    root.mkdir(parents=True)
    with WebhookSink(secret, root / "sink.jsonl") as sink:
        cfg = write_config(
            root, store=f"sqlite:///{root / 'j.db'}", url=sink.url, secret=secret, models=models
        )
        write_lead_csv(root / "inbox" / "leads.csv", ROWS, seed=99_999)
        return timed_run(cfg) * 1.2


def _statuses(store_url: str, ids: set[str]) -> dict[str, int]:
    from tests.integration.helpers import rows_of

    out: dict[str, int] = {}
    for did, status, attempts, err in rows_of(
        store_url, "SELECT id, status, attempts, last_error FROM deliveries"
    ):
        if did in ids:
            key = f"{status}/{attempts}/{(err or '')[:60]}"
            out[key] = out.get(key, 0) + 1
    return out


def _delivery_ids(store_url: str, status: str) -> set[str]:
    from tests.integration.helpers import rows_of

    return {d for d, s in rows_of(store_url, "SELECT id, status FROM deliveries") if s == status}


@pytest.mark.parametrize("receiver_faults", [False, True], ids=["kill", "kill+bad-receiver"])
def test_sigkill_at_random_points_sqlite(
    tmp_path: Path, models_dir: Path, receiver_faults: bool
) -> None:
    span = _undisturbed_span(tmp_path / "probe", models_dir)
    outcomes = []
    for seed in range(SEEDS):
        root = tmp_path / f"s{seed}"
        outcomes.append(
            _seed(root, f"sqlite:///{root / 'j.db'}", models_dir, seed, span, receiver_faults)
        )
    bad = [o for o in outcomes if o.problem]
    assert not bad, "\n".join(
        f"seed {o.seed} (killed at {o.killed_at:.3f}s): {o.problem}" for o in bad
    )
    # the kills landed: most seeds were killed before their run finished
    assert sum(o.exit_code == -9 for o in outcomes) >= SEEDS // 2
