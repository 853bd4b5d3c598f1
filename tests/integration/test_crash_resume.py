"""SIGKILL the hub mid-run, resume it: every row delivered exactly once by idempotency key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar, write_config

ROWS = 20_000


def _run(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "junction.cli.main",
            "run",
            str(cfg),
            "--once",
            "--drain-wait",
            "10",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_until(predicate, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"hub exited ({proc.returncode}) before the kill point:\n{err[-3000:]}")
        time.sleep(0.02)
    pytest.fail("kill point never reached")


def _kill_mid_poll_then_resume(
    cfg: Path, store_url: str, sink: WebhookSink, n: int, *, before_resume=None
) -> None:
    """SIGKILL ``junction run`` once some records (but not most) are stored, run it again, and
    check that all ``n`` versions were stored and delivered exactly once (the sink writes to
    ``sink.jsonl`` beside the config)."""
    proc = _run(cfg)

    def mid_poll() -> bool:
        try:
            got = scalar(store_url, "SELECT count(*) FROM records")
        except Exception:
            return False
        return 300 <= got < n - 1000

    _wait_until(mid_poll, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = scalar(store_url, "SELECT count(*) FROM records")
    if before_resume is not None:
        before_resume()
    proc = _run(cfg)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    assert at_kill <= scalar(store_url, "SELECT count(*) FROM records") == n  # none lost/doubled
    assert scalar(store_url, "SELECT count(DISTINCT source_key) FROM records") == n
    ids = [line["webhook_id"] for line in read_sink_file(cfg.parent / "sink.jsonl")]
    assert len(ids) == len(set(ids)) == sink.stats()["unique"] == n  # each delivered once


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_during", "workers"), [("ingest", 0), ("ingest", 2), ("delivery", 0)]
)
def test_sigkill_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, store_url: str, models_dir: Path, kill_during: str, workers: int
) -> None:
    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path,
            store=store_url,
            url=sink.url,
            secret=secret,
            models=models_dir,
            batch=500,
            lease=1,
            workers=workers,
        )
        write_lead_csv(tmp_path / "inbox" / "big.csv", ROWS, seed=21, messy=True)

        def ingest_started() -> bool:
            try:
                n = scalar(store_url, "SELECT count(*) FROM records")
            except Exception:
                return False
            return 1000 <= n < ROWS - 2000

        def delivery_started() -> bool:
            return sink.stats()["unique"] >= 500

        proc = _run(cfg)
        _wait_until(ingest_started if kill_during == "ingest" else delivery_started, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= workers
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # worker processes notice their runner is gone and exit: no orphans hold memory
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        at_kill = scalar(store_url, "SELECT count(*) FROM records")
        assert (tmp_path / "inbox" / "big.csv").exists() or kill_during == "delivery"

        time.sleep(1.2)  # let the dead worker's leases expire
        proc = _run(cfg)
        assert proc.wait(timeout=300) == 0, (
            proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        )
        stats = sink.stats()

    records = scalar(store_url, "SELECT count(*) FROM records")
    quarantined = scalar(store_url, "SELECT count(*) FROM quarantine")
    deliveries = scalar(store_url, "SELECT count(*) FROM deliveries")
    delivered = scalar(store_url, "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
    assert at_kill <= records
    assert records + quarantined == ROWS  # none lost, none doubled
    assert deliveries == delivered == records  # each record routed once, all delivered
    ids = [line["webhook_id"] for line in read_sink_file(tmp_path / "sink.jsonl")]
    assert len(ids) == len(set(ids)) == records == stats["unique"]  # exactly once by key
    assert (tmp_path / "processed" / "big.csv").exists()


@pytest.mark.slow
def test_sigkill_mid_poll_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    from tests.contract.fixtures.fake import write_source

    n = 3000
    secret = generate_secret()
    (tmp_path / "crm").mkdir()
    write_source(
        tmp_path / "crm" / "source.jsonl",
        [
            {
                "stream": "leads",
                "id": f"00Q{i:05d}",
                "updated_at": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z",
                "email": f"l{i}@a.example",
                "lead_id": f"00Q{i:05d}",
            }
            for i in range(n)
        ],
    )
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path, store=store_url, url=sink.url, secret=secret, models=models_dir, batch=50
        )
        text = cfg.read_text().replace(
            "connector: csv_file\n      path: inbox/*.csv\n      settle_seconds: 0",
            "connector: fake\n      path: crm/source.jsonl\n      latency_s: 0.02\n"
            "      streams: [leads]",
        )
        cfg.write_text(text)
        _kill_mid_poll_then_resume(cfg, store_url, sink, n)


@pytest.mark.slow
def test_sigkill_mid_salesforce_poll_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    """The hub is killed between pages of a Salesforce poll (the fake org, the real SDK)."""
    from datetime import UTC, datetime, timedelta

    import orjson

    from tests.fakes.salesforce import FakeOrg, options_for
    from tests.fakes.salesforce_data import lead_fields
    from tests.fakes.server import serve_app

    n = 3000
    org = FakeOrg()
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for i in range(n):
        org.insert("Lead", lead_fields(i), modstamp=t0 + timedelta(seconds=30 * i))
    org.faults.delay_s = 0.25  # every page of the first run is slow: the kill lands mid-poll
    org.faults.fail_next("timeout", 10_000, path_contains="/query")
    secret = generate_secret()
    with serve_app(org.app()) as base, WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_config(
            tmp_path, store=store_url, url=sink.url, secret=secret, models=models_dir, batch=200
        )
        source = {**options_for(org, base, "client_credentials"), "page_size": 200}
        options = "".join(f"      {k}: {orjson.dumps(v).decode()}\n" for k, v in source.items())
        text = cfg.read_text().replace(
            "connector: csv_file\n      path: inbox/*.csv\n      settle_seconds: 0\n",
            f"connector: salesforce\n      streams: [Lead]\n{options}",
        )
        cfg.write_text(text.replace("mapping: csv.lead", "mapping: salesforce.lead"))
        _kill_mid_poll_then_resume(cfg, store_url, sink, n, before_resume=org.faults.clear)
