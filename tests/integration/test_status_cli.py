"""``junction status``: last runs, backlogs and what needs attention, from the store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sqlalchemy import create_engine, update
from typer.testing import CliRunner

from junction.cli.main import app
from junction.pipeline.hub import Hub
from junction.store import tables as t
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import write_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
runner = CliRunner()


def _status(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["status", *args, "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_shows_runs_and_backlogs_and_flags_what_needs_attention(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path, store=store_url, url="http://127.0.0.1:9", secret=SECRET, models=models_dir
    )
    code, before = _status(str(cfg))
    assert code == 0
    assert before["pipelines"]["leads"]["last_run"] is None
    write_lead_csv(tmp_path / "inbox" / "leads.csv", 300, seed=8)
    hub = Hub.from_file(cfg)
    try:
        [summary] = hub.run_once()  # no delivery pass: the outbox keeps them pending
    finally:
        hub.close()
    code, after = _status(str(cfg))
    assert code == 0, after["attention"]
    run = after["pipelines"]["leads"]["last_run"]
    assert run["status"] == "succeeded"
    assert run["counts"]["read"] == 300
    assert after["backlog"]["pending_deliveries"] == summary.routed > 0
    assert after["backlog"]["oldest_due_s"] >= 0
    open_q = {(q["pipeline"], q["stage"]): q["open"] for q in after["backlog"]["open_quarantine"]}
    assert sum(open_q.values()) == summary.quarantined
    # a dead delivery and a service that does not answer need attention
    eng = create_engine(store_url)
    try:
        with eng.begin() as conn:
            conn.execute(update(t.deliveries).values(status="dead"))
    finally:
        eng.dispose()
    code, bad = _status(str(cfg), "--url", f"http://127.0.0.1:{_closed_port()}")
    assert code == 1
    assert bad["backlog"]["dead_deliveries"] == summary.routed
    assert bad["service"]["ready"] is False
    assert any("dead deliveries" in a for a in bad["attention"])
    assert any("not ready" in a for a in bad["attention"])
