"""Batches prepared in worker processes give exactly what the inline path gives."""

from __future__ import annotations

import json
from pathlib import Path

from junction.pipeline.hub import Hub
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, write_config


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
    return [
        *[
            (rid, payload, {k: v for k, v in json.loads(prov).items() if k != "file"})
            for rid, payload, prov in rows_of(
                store, "SELECT id, payload, provenance FROM records ORDER BY id"
            )
        ],
        *rows_of(store, "SELECT record_id, value, grade, factors FROM scores ORDER BY record_id"),
        *rows_of(store, "SELECT id, channel, payload FROM deliveries ORDER BY id"),
        *rows_of(
            store,
            "SELECT record_key, stage, error_code, payload FROM quarantine ORDER BY record_key",
        ),
    ]


def test_worker_processes_match_inline(tmp_path: Path, models_dir: Path) -> None:
    inline = _ingest(tmp_path / "inline", models_dir, workers=0)
    parallel = _ingest(tmp_path / "parallel", models_dir, workers=2)
    assert len(inline) > 8000
    assert parallel == inline
