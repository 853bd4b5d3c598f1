"""Graceful shutdown of ``junction serve`` with work in flight, and the restart that finishes it:
every row stored once, every delivery sent once by its idempotency key."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar
from tests.serve.helpers import (
    Serve,
    drop,
    pipeline_yaml,
    signal_mid_file,
    wait_for,
    write_serve_config,
)

PHASES = ("signal", "drain", "http", "runs", "deliveries", "release", "exit")
LEASED = (
    "SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_until IS NOT NULL "
    "AND lease_until > {now}"
)


def _records(store_url: str) -> int:
    return scalar(store_url, "SELECT count(*) FROM records")


def _finish_after_restart(cfg: Path, inbox: Path, store_url: str, name: str) -> Serve:
    with Serve(cfg) as serve:
        serve.wait_ready()
        wait_for(lambda: (inbox / "processed" / name).exists(), 30, "the file archived")
        wait_for(
            lambda: (
                scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0
            ),
            30,
            "every delivery sent",
        )
        assert serve.stop() == 0
    return serve


def _assert_everything_once(store_url: str, rows: int, sink: WebhookSink, journal: Path) -> None:
    records = _records(store_url)
    assert records == scalar(store_url, "SELECT count(DISTINCT id) FROM records")
    assert records + scalar(store_url, "SELECT count(*) FROM quarantine") == rows
    deliveries = scalar(store_url, "SELECT count(*) FROM deliveries")
    delivered = scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
    assert deliveries == delivered > 0
    ids = [line["webhook_id"] for line in read_sink_file(journal)]
    assert len(ids) == len(set(ids)) == deliveries == sink.stats()["unique"]


def test_sigterm_mid_ingest_stops_between_batches_and_a_restart_finishes(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    rows, grace = 20_000, 6.0
    secret = generate_secret()
    big = tmp_path / "big.csv"
    write_lead_csv(big, rows, seed=11, messy=True)
    inbox = tmp_path / "inbox"
    journal = tmp_path / "sink.jsonl"
    with WebhookSink(secret, journal) as sink:
        sink.faults.delay_s = 0.05  # sends are in flight when the signal comes
        cfg = write_serve_config(
            tmp_path,
            store=store_url,
            models=models_dir,
            url=sink.url,
            secret=secret,
            grace=grace,
            pipelines=pipeline_yaml(batch=200),
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            drop(big, inbox)
            began = signal_mid_file(serve, store_url, 2000, rows - 8000, signal.SIGTERM)
            code = serve.wait(grace + 10)
            took = time.monotonic() - began
            assert code == 0, serve.log()[-3000:]
            assert took <= grace
            assert all(serve.phase(p) is not None for p in PHASES), serve.log()[-3000:]
            assert serve.phase("runs") == serve.phase("runs") | {"stopped": 1, "still_running": 0}
        at_stop = _records(store_url)
        assert at_stop < rows - 4000  # it stopped between batches, not after the file
        pending = scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'pending'")
        assert pending > 0  # committed for delivery, not sent yet: the restart sends them
        assert (inbox / "processing" / "big.csv").exists()  # claimed, to be resumed
        assert scalar(store_url, LEASED.format(now=time.time())) == 0  # leases given back
        assert scalar(store_url, "SELECT count(*) FROM runs WHERE status = 'interrupted'") == 1
        sink.faults.delay_s = 0
        _finish_after_restart(cfg, inbox, store_url, "big.csv")
        _assert_everything_once(store_url, rows, sink, journal)


def test_a_stalled_receiver_cannot_hold_shutdown_past_the_bound(
    tmp_path: Path, models_dir: Path
) -> None:
    rows, grace = 600, 4.0
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    secret = generate_secret()
    src = tmp_path / "leads.csv"
    write_lead_csv(src, rows, seed=12, messy=False)
    inbox = tmp_path / "inbox"
    journal = tmp_path / "sink.jsonl"
    with WebhookSink(secret, journal) as sink:
        sink.faults.delay_s = 20.0  # answers long after the service's grace has run out
        cfg = write_serve_config(
            tmp_path,
            store=store,
            models=models_dir,
            url=sink.url,
            secret=secret,
            grace=grace,
            timeout=30,
            lease=60,
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            drop(src, inbox)
            wait_for(lambda: sink.stats()["received"] >= 10, 20, "sends in flight")
            assert scalar(store, LEASED.format(now=time.time())) > 0
            began = time.monotonic()
            serve.signal(signal.SIGTERM)
            assert serve.wait(grace + 10) == 0
            # the grace bounds the wait for the stalled sends; the process's own exit after it
            # takes a moment more on a loaded machine, nowhere near the receiver's 20 s
            assert time.monotonic() - began <= grace + 4.0
            released = serve.phase("release")
            deliveries = serve.phase("deliveries")
        assert deliveries is not None
        assert deliveries["finished"] is False
        assert released is not None
        assert released["deliveries"] > 0
        # the 60 s leases were given back: a restart sends at once instead of waiting them out
        assert scalar(store, LEASED.format(now=time.time())) == 0
        sink.faults.delay_s = 0
        _finish_after_restart(cfg, inbox, store, "leads.csv")
        _assert_everything_once(store, rows, sink, journal)


def test_a_second_signal_exits_at_once_and_loses_nothing(tmp_path: Path, models_dir: Path) -> None:
    rows = 20_000
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    secret = generate_secret()
    big = tmp_path / "big.csv"
    write_lead_csv(big, rows, seed=13, messy=True)
    inbox = tmp_path / "inbox"
    journal = tmp_path / "sink.jsonl"
    with WebhookSink(secret, journal) as sink:
        cfg = write_serve_config(
            tmp_path,
            store=store,
            models=models_dir,
            url=sink.url,
            secret=secret,
            grace=20,
            lease=1,
            pipelines=pipeline_yaml(batch=200),
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            drop(big, inbox)
            began = signal_mid_file(serve, store, 2000, rows - 8000, signal.SIGTERM)
            serve.wait_event("shutdown requested", timeout=5)
            serve.signal(signal.SIGINT)
            code = serve.wait(10)
            assert time.monotonic() - began < 3.0
            assert code == 128 + signal.SIGINT
            assert serve.phase("abort") is not None
        time.sleep(1.2)  # delivery leases of the aborted process expire (lease_s: 1)
        _finish_after_restart(cfg, inbox, store, "big.csv")
        _assert_everything_once(store, rows, sink, journal)
