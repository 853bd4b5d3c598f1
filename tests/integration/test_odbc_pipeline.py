"""An ODBC table as a polled source through the runner: SQLite ODBC source, SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from tests.contract.fixtures.fake import write_lead_mapping
from tests.contract.fixtures.odbc import make_leads_db
from tests.integration.helpers import rows_of, run_once, scalar

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  crm:
    batch_size: 2
    source:
      connector: odbc
      connection_string: "Driver=SQLite3;Database={db}"
      overlap_s: 0
      tables: {{leads: {{watermark_column: updated_at}}}}
      streams: [leads]
    mapping: fake_lead.yaml
    scoring: {{model: lead-score}}
    routes:
      - otherwise: [webhook.sales]
channels:
  webhook.sales:
    url: "http://127.0.0.1:9/hook"
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""


@pytest.fixture
def erp(tmp_path: Path, models_dir: Path):
    db = tmp_path / "erp.db"
    make_leads_db(db, rows=5)
    write_lead_mapping(tmp_path)
    url = f"sqlite:///{tmp_path / 'junction.db'}"
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(CONFIG.format(store=url, models=models_dir, db=db))
    return db, cfg, url


def test_polls_incrementally_and_stores_each_version_once(erp):
    db, cfg, url = erp
    first = run_once(cfg)
    assert (first.read, first.stored, first.routed) == (5, 5, 5)
    assert run_once(cfg).read == 0
    con = sqlite3.connect(db)
    with con:
        # one row changes; one arrives late at the current watermark (10:00:01)
        con.execute("UPDATE leads SET views = 40, updated_at = '2026-12-01 11:00:00' WHERE id='L1'")
        con.execute(
            "INSERT INTO leads VALUES ('L9', 'late@example.com', 'Acme', 1, '1.00',"
            " '2026-12-01 10:00:01')"
        )
    con.close()
    third = run_once(cfg)
    assert (third.read, third.stored, third.routed) == (2, 2, 2)
    assert scalar(url, "SELECT COUNT(*) FROM records") == 7
    ids = {r[0] for r in rows_of(url, "SELECT id FROM records")}
    assert "crm:L1@2026-12-01T11:00:00.000000Z" in ids
    assert "crm:L9@2026-12-01T10:00:01.000000Z" in ids
    heads = rows_of(url, "SELECT source_key, version FROM record_heads WHERE source_key='L1'")
    assert heads == [("L1", "2026-12-01T11:00:00.000000Z")]
    (value,) = rows_of(url, "SELECT value FROM cursors WHERE stream='leads'")[0]
    cursor = orjson.loads(value)
    assert cursor["watermark"] == "2026-12-01T11:00:00"
    assert cursor["seen"] == {"L1": "2026-12-01T11:00:00.000000Z"}
    assert run_once(cfg).read == 0
