"""XML file drops through the pipeline: good files land, hostile ones are quarantined whole."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.hub import Hub
from tests.integration.helpers import run_once_and_quarantine, write_config

LEADS = """<?xml version="1.0" encoding="windows-1251"?>
<export xmlns="urn:example:crm">
  <lead id="L-1"><first_name>Иван</first_name><email>Ivan@Example.com</email>
    <phone>8 916 123-45-67</phone><country>RU</country><employees>12</employees></lead>
  <lead id="L-2"><first_name>Anna</first_name><email>not-an-email</email>
    <country>DE</country></lead>
  <lead id="L-3"><first_name>Ola</first_name><email>ola@example.org</email>
    <country>Norway</country></lead>
</export>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file://{canary}">]>
<export><lead id="X-1"><email>&x;</email></lead></export>
"""


def _hub(tmp_path: Path, models_dir: Path) -> Hub:
    cfg = write_config(
        tmp_path,
        store=f"sqlite:///{tmp_path / 'j.db'}",
        url="http://127.0.0.1:9",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        models=models_dir,
    )
    text = cfg.read_text().replace("path: inbox/*.csv", "path: inbox/*.xml\n      record_tag: lead")
    cfg.write_text(
        text.replace("connector: csv_file", "connector: xml_file").replace("csv.lead", "xml.lead")
    )
    return Hub.from_file(cfg)


def test_cp1251_xml_with_namespaces_lands_and_bad_records_are_quarantined(
    tmp_path: Path, models_dir: Path
) -> None:
    hub = _hub(tmp_path, models_dir)
    (tmp_path / "inbox" / "leads.xml").write_bytes(LEADS.encode("cp1251"))
    try:
        [s] = hub.run_once()
        rows = {r["source_key"]: r for r in _records(hub)}
        [q] = hub.store.list_quarantine()
    finally:
        hub.close()
    assert s.read == 3
    assert s.stored == 2
    assert set(rows) == {"L-1", "L-3"}
    assert '"first_name":"Иван"' in rows["L-1"]["payload"]
    assert '"phone":"+79161234567"' in rows["L-1"]["payload"]
    assert '"email":"ivan@example.com"' in rows["L-1"]["payload"]
    assert '"country":"NO"' in rows["L-3"]["payload"]
    assert q["error_code"] == "mapping_error"
    assert q["record_key"].endswith(":2")
    assert (tmp_path / "processed" / "leads.xml").exists()


def test_xxe_file_is_quarantined_and_the_canary_never_read(
    tmp_path: Path, models_dir: Path
) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-SECRET-7f3a")
    hub = _hub(tmp_path, models_dir)
    (tmp_path / "inbox" / "evil.xml").write_text(XXE.format(canary=canary))
    s, [q], records = run_once_and_quarantine(hub)
    assert s.files_failed == 1
    assert records == 0
    assert q["error_code"] == "dtd_forbidden"
    assert b"CANARY-SECRET" not in (q["payload"] or b"").replace(str(canary).encode(), b"")
    assert "CANARY-SECRET" not in q["message"] + q["context"]
    assert (tmp_path / "rejected" / "evil.xml").exists()


def _records(hub: Hub) -> list[dict]:
    from sqlalchemy import select

    from junction.store import tables as t

    with hub.store.begin() as conn:
        return [dict(r) for r in conn.execute(select(t.records)).mappings()]
