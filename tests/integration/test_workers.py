"""Batches prepared in worker processes give exactly what the inline path gives."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from junction.core.errors import InternalError
from junction.pipeline.hub import Hub
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar, stored_effects, write_config


def _ingest(root: Path, models_dir: Path, workers: int) -> list[tuple]:
    store = f"sqlite:///{root / 'j.db'}"
    cfg = write_config(
        root,
        store=store,
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models_dir,
        batch=300,
        workers=workers,
    )
    write_lead_csv(root / "inbox" / "same.csv", 4000, seed=17, messy=True)
    hub = Hub.from_file(cfg)
    try:
        [summary] = hub.run_once()
    finally:
        hub.close()
    assert summary.read == 4000
    return stored_effects(store)


def test_worker_processes_match_inline(tmp_path: Path, models_dir: Path) -> None:
    inline = _ingest(tmp_path / "inline", models_dir, workers=0)
    parallel = _ingest(tmp_path / "parallel", models_dir, workers=2)
    assert len(inline) > 8000
    assert parallel == inline


def test_a_worker_killed_mid_file_fails_the_run_and_the_rerun_completes(
    tmp_path: Path, models_dir: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'j.db'}"
    cfg = write_config(
        tmp_path,
        store=store,
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models_dir,
        batch=250,
        workers=2,
    )
    write_lead_csv(tmp_path / "inbox" / "big.csv", 20_000, seed=23, messy=True)
    hub = Hub.from_file(cfg)

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                n = scalar(store, "SELECT count(*) FROM records")
            except Exception:
                n = 0
            if n >= 2000:
                workers = [
                    c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())
                ]
                if workers:
                    workers[0].send_signal(signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        with pytest.raises(InternalError, match="worker process died"):
            hub.run_once()
        killer.join()
        assert (tmp_path / "inbox" / "big.csv").exists()  # not archived: not finished
        [again] = hub.run_once()
        counts = hub.store.counts()
    finally:
        hub.close()
    assert again.files == 1
    assert counts["records"] + counts["quarantined"] == 20_000
    assert counts["deliveries_pending"] == counts["records"]
    assert (tmp_path / "processed" / "big.csv").exists()
