"""A hub with pipelines but no channels: ``run --once`` finishes (found by the hardening review).

The delivery worker's dispatcher waited for a channel to want rows; with no channel at all none
ever does, so the drain never ended and `junction run --once` hung (and ignored SIGTERM).
"""

from __future__ import annotations

import threading
from pathlib import Path

from junction.pipeline.hub import Hub
from scoring.synthetic import write_lead_csv


def test_run_once_without_channels_finishes(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "inbox").mkdir()
    write_lead_csv(tmp_path / "inbox" / "leads.csv", 50, seed=3)
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(
        f"""\
store: "sqlite:///{tmp_path / "j.db"}"
models_dir: {models_dir}
pipelines:
  leads:
    source: {{connector: csv_file, path: {tmp_path}/inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    scoring: {{model: lead-score}}
""",
        encoding="utf-8",
    )
    result: dict[str, object] = {}

    def run() -> None:
        hub = Hub.from_file(cfg)
        try:
            result["runs"] = hub.run_once()
            result["stats"] = hub.deliver(drain_wait_s=0.0)
        finally:
            hub.close()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "run --once never finished its (empty) delivery pass"
    [summary] = result["runs"]  # type: ignore[misc]
    assert summary.stored + summary.quarantined == 50
    assert result["stats"].delivered == 0  # type: ignore[attr-defined]
