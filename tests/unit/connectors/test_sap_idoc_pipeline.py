"""IDoc drops through the pipeline and `junction ingest`: routed IDocs land, bad files go whole."""

from __future__ import annotations

import io
import json
from pathlib import Path

from junction.pipeline.hub import Hub
from junction.pipeline.ingest import ingest_file
from tests.contract.fixtures.sap_idoc import idoc, idoc_file

CONFIG = """\
store: "sqlite:///{root}/j.db"
models_dir: {root}/models
pipelines:
  sap_orders:
    source:
      connector: sap_idoc
      path: inbox/*.xml
      message_types: [ORDERS]
      settle_seconds: 0
    mapping: sap.idoc.orders05
    batch_size: 2
    workers: 0
"""


def _hub(tmp_path: Path) -> Hub:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "models").mkdir()
    cfg = tmp_path / "junction.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path), encoding="utf-8")
    return Hub.from_file(cfg)


def test_routed_idocs_land_and_other_message_types_are_quarantined(tmp_path):
    hub = _hub(tmp_path)
    drop = tmp_path / "inbox" / "orders.xml"
    drop.write_text(idoc_file([idoc(1), idoc(2, mestyp="ORDRSP"), idoc(3)]), encoding="utf-8")
    try:
        [summary] = hub.run_once()
        quarantine = hub.store.list_quarantine()
        counts = hub.store.counts()
    finally:
        hub.close()
    assert summary.read == 3
    assert counts["records"] == 2
    [q] = quarantine
    assert q["error_code"] == "idoc_not_selected"
    assert (tmp_path / "processed" / "orders.xml").exists()


def test_a_malformed_idoc_quarantines_the_whole_file_and_stores_nothing(tmp_path):
    hub = _hub(tmp_path)
    broken = idoc(3).replace("<MESTYP>ORDERS</MESTYP>", "")
    drop = tmp_path / "inbox" / "orders.xml"
    drop.write_text(idoc_file([idoc(1), idoc(2), broken]), encoding="utf-8")
    try:
        [summary] = hub.run_once()
        quarantine = hub.store.list_quarantine()
        counts = hub.store.counts()
    finally:
        hub.close()
    assert counts["records"] == 0  # the two good IDocs before it are not half-stored
    [q] = quarantine
    assert q["error_code"] == "malformed_idoc"
    assert summary.files_failed == 1
    reason = (tmp_path / "rejected" / "orders.xml.reason.txt").read_text(encoding="utf-8")
    assert "IDoc 3 (line 5) is malformed: EDI_DC40 has no MESTYP" in reason


def test_ingest_reads_with_the_specs_reader(tmp_path):
    path = tmp_path / "orders.xml"
    path.write_text(idoc_file([idoc(1), idoc(2, mestyp="ORDRSP")]), encoding="utf-8")
    out = io.BytesIO()
    result = ingest_file(path, "sap.idoc.orders05", out)
    [order] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert order["external_id"] == "4500000001"
    assert order["lines"][0]["quantity"] == "1.000"
    assert result.ok == 1
    [error] = result.errors
    assert error.startswith("row 2: IDoc 2 is ORDRSP/ORDERS05; this reader takes ORDERS")
