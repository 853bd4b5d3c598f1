"""The `junction` command line, end to end, through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli.main import app
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import write_config

runner = CliRunner()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_demo_runs_the_whole_flow_and_every_signature_verifies(tmp_path: Path) -> None:
    result = invoke("demo", "--rows", "400", "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert "sink: signatures verified" in result.output
    lines = (tmp_path / "demo" / "sink.jsonl").read_text().splitlines()
    stored = [json.loads(line) for line in lines]
    assert 390 <= len(stored) < 400  # a few rows are deliberately bad and quarantined
    assert len({s["webhook_id"] for s in stored}) == len(stored)
    assert not (tmp_path / "demo" / "inbox" / "leads-demo.csv").exists()


def test_check_reports_valid_config_and_line_numbered_errors(
    tmp_path: Path, models_dir: Path
) -> None:
    cfg = write_config(
        tmp_path, store="sqlite:///j.db", url="http://127.0.0.1:9", secret=SECRET, models=models_dir
    )
    ok = invoke("check", str(cfg))
    assert ok.exit_code == 0, ok.output
    assert "pipeline leads: csv_file → csv.lead (lead), 1 rule(s), 2 route(s)" in ok.output
    cfg.write_text(cfg.read_text().replace("batch_size: 500", "batch_size: nope"))
    bad = invoke("check", str(cfg))
    assert bad.exit_code == 2
    assert f"{cfg}:10: pipelines.leads.batch_size" in bad.output
    cfg.write_text(
        cfg.read_text()
        .replace("batch_size: nope", "batch_size: 5")
        .replace("lead.email", "lead.emial")
    )
    typo = invoke("check", str(cfg))
    assert typo.exit_code == 2
    assert "lead has no field(s) emial" in typo.output


def test_connectors_list_and_mapping_cases_and_schemas() -> None:
    listed = invoke("connectors", "list")
    assert listed.exit_code == 0
    for name in ("csv_file", "xml_file", "webhook", "sklearn_lead"):
        assert name in listed.output
    cases = invoke("mappings", "test")
    assert cases.exit_code == 0, cases.output
    assert " 0 failed" in cases.output
    assert invoke("schemas", "export", "--check").exit_code == 0


def test_mappings_list_names_every_built_in_spec_with_its_entity_and_cases() -> None:
    from mappings.cases import run_cases
    from mappings.engine import builtin_spec_ids, load_spec

    listed = invoke("mappings", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    ids = builtin_spec_ids()
    assert [r["id"] for r in rows] == ids
    assert {"csv.lead", "salesforce.contact", "sap.idoc.orders05"} <= set(ids)
    for row in rows:
        spec = load_spec(row["id"])
        assert row["entity"] == spec.entity
        assert row["fields"] == len(spec.fields)
        # counted from the cases file, checked against the cases the test command runs
        assert row["cases"] == len(run_cases(row["id"])) > 0
    by_id = {r["id"]: r for r in rows}
    assert by_id["sap.idoc.orders05"]["reader"] == "sap_idoc"
    assert by_id["csv.lead"]["reader"] == "by file type"
    table = runner.invoke(app, ["mappings", "list"], env={"COLUMNS": "60"})
    assert table.exit_code == 0, table.output
    for spec_id in ids:  # an id is never cut, even on a narrow terminal
        assert f" {spec_id} " in table.output


def test_schemas_check_fails_on_stale_files(tmp_path: Path) -> None:
    assert invoke("schemas", "export", "--out", str(tmp_path)).exit_code == 0
    (tmp_path / "lead.schema.json").write_text("{}")
    stale = invoke("schemas", "export", "--out", str(tmp_path), "--check")
    assert stale.exit_code == 1
    assert "lead.schema.json" in stale.output


def test_ingest_writes_canonical_json_lines_and_reports_rejects(tmp_path: Path) -> None:
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 50, seed=4, messy=False)
    text = src.read_text().splitlines()
    text[3] = text[3].replace("@", "-at-", 1)  # data row 3: invalid email
    src.write_text("\n".join(text) + "\n")
    out = tmp_path / "out.jsonl"
    result = invoke("ingest", str(src), "--mapping", "csv.lead", "--out", str(out))
    assert result.exit_code == 1  # some rows were rejected
    assert "49 canonical records, 1 rejected" in result.output
    assert "row 3:" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 49
    assert all(r["schema_version"] == "lead.v1" for r in rows)


def test_quarantine_list_show_and_replay(tmp_path: Path, models_dir: Path) -> None:
    cfg = write_config(
        tmp_path,
        store=f"sqlite:///{tmp_path / 'j.db'}",
        url="http://127.0.0.1:9",
        secret=SECRET,
        models=models_dir,
        schedule="[0.01]",
    )
    write_lead_csv(tmp_path / "inbox" / "l.csv", 3, seed=2, messy=False)
    run = invoke("run", str(cfg), "--once", "--drain-wait", "1")
    assert run.exit_code == 0, run.output
    assert "leads: read 3, stored 3" in run.output
    listed = invoke("quarantine", "list", str(cfg))
    assert listed.exit_code == 0
    assert listed.output.count("unavailable") == 3  # nothing listens on port 9
    shown = invoke("quarantine", "show", str(cfg), "1")
    assert shown.exit_code == 0
    assert '"stage": "deliver"' in shown.output
    replayed = invoke("quarantine", "replay", str(cfg), "1")
    assert replayed.exit_code == 0
    assert "1: delivery re-queued" in replayed.output
    again = invoke("quarantine", "replay", str(cfg), "1")
    assert "1: already replayed" in again.output


@pytest.mark.parametrize("missing", ["nope.yaml"])
def test_missing_config_is_a_clear_error(tmp_path: Path, missing: str) -> None:
    result = invoke("check", str(tmp_path / missing))
    assert result.exit_code == 2
    assert "cannot read config file" in result.output
