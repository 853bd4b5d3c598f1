"""A file whose every batch committed before a crash, but whose ledger entry did not.

Found by the fault suite: the resumed run had nothing left to read, so it recorded the file as
done with no hash prefix and 0 rows, and ``junction reconcile`` found every record unexplained.
The resumed run now takes the hash and row count from the file's cursor.
"""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.hub import Hub
from junction.pipeline.runner import RunSummary
from junction.store.reconcile import reconcile
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import rows_of, write_config

ROWS = 240


def test_resume_after_the_last_batch_committed(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path,
        store=store_url,
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models_dir,
        batch=50,
    )
    drop = tmp_path / "inbox" / "leads.csv"
    write_lead_csv(drop, ROWS, seed=12)
    hub = Hub.from_file(cfg)
    try:
        runner = hub.runner("leads")
        crashed = RunSummary("leads", 0)
        for batch in runner.connector.read(str(drop), None):
            runner.process_batch(batch, crashed)  # each batch with its cursor, as a run does
        # the process died here: every batch committed, the file not yet finished
        assert crashed.read == ROWS
        [resumed] = hub.run_once()
        assert resumed.read == 0  # nothing left to read
        [(sha, status, rows)] = rows_of(
            store_url, "SELECT sha256, status, rows FROM files WHERE pipeline = 'leads'"
        )
        assert (status, rows) == ("done", ROWS)
        assert len(sha) == 64
        result = reconcile(hub.store, "leads", scored=True)
    finally:
        hub.close()
    assert result.clean, result.as_dict()
    assert result.expected == ROWS
    assert not drop.exists()  # archived
