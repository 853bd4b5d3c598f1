"""Errors a person can act on: the line to fix, the field, the value masked; one line, exit code.

The real ``junction`` command runs through Typer's runner on files written here: a mapping spec
of our own (so its path and line are known), a CSV with a broken address, a configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import junction.cli.errors as cli_errors
from junction.cli.main import app
from junction.store.repo import Store
from mappings.engine import SPECS_DIR

runner = CliRunner()

ROWS = (
    "lead_id,first_name,last_name,email,country\n"
    "L1,Jane,Doe,jane.doe@@example.com,DE\n"
    "L2,John,Roe,john@example.com,DE\n"
)


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def email_line(spec: Path) -> int:
    lines = spec.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith("  email:"))


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """The built-in lead spec under another id, in a file of ours."""
    text = (SPECS_DIR / "csv" / "lead.yaml").read_text()
    path = tmp_path / "my_lead.yaml"
    path.write_text(text.replace("id: csv.lead", "id: my.lead"))
    return path


@pytest.fixture
def hub(tmp_path: Path, spec: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.csv").write_text(ROWS)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(
        f"store: sqlite:///{tmp_path / 'hub.db'}\n"
        "pipelines:\n"
        "  leads:\n"
        "    source: {connector: csv_file, path: inbox/*.csv, settle_seconds: 0}\n"
        f"    mapping: {spec}\n"
        "channels: {}\n"
    )
    return cfg


def located(spec: Path) -> str:
    return f"{spec}:{email_line(spec)}: field `email`: email rejected the value 'j***@example.com'"


def test_ingest_names_the_spec_line_the_field_and_the_masked_value(
    tmp_path: Path, spec: Path
) -> None:
    src = tmp_path / "a.csv"
    src.write_text(ROWS)
    result = invoke("ingest", str(src), "--mapping", str(spec), "--out", str(tmp_path / "o.jsonl"))
    assert result.exit_code == 1
    assert "1 canonical records, 1 rejected" in result.output
    assert located(spec) in result.output
    assert "— fix: correct the address in the source" in result.output
    assert "jane.doe" not in result.output


def test_run_quarantines_the_located_error_and_prints_it(hub: Path, spec: Path) -> None:
    result = invoke("run", str(hub), "--once")
    assert result.exit_code == 0, result.output
    assert "leads: read 2, stored 1, quarantined 1" in result.output
    assert f"quarantined: {located(spec)}" in result.output
    assert "jane.doe" not in result.output
    store = Store.open(f"sqlite:///{hub.parent / 'hub.db'}")
    try:
        [entry] = store.list_quarantine(pipeline="leads")
    finally:
        store.close()
    # the dashboard and `quarantine show` read this row
    assert entry["error_code"] == "mapping_error"
    assert entry["message"].startswith(located(spec))
    assert "— fix: " in entry["message"]
    context = json.loads(entry["context"])
    assert context["spec_file"] == str(spec)
    assert context["spec_line"] == email_line(spec)
    assert (context["field"], context["transform"], context["spec"]) == (
        "email",
        "email",
        "my.lead",
    )
    assert "jane.doe" not in entry["message"] + entry["context"]


def test_mappings_test_shows_the_spec_line_of_a_failing_case(tmp_path: Path, spec: Path) -> None:
    (tmp_path / "my_lead.cases.yaml").write_text(
        "cases:\n"
        "  - name: an address the source mangled\n"
        '    input: {lead_id: L1, email: "jane.doe@@example.com"}\n'
        "    expect: {email: jane.doe@example.com}\n"
    )
    result = invoke("mappings", "test", str(spec))
    assert result.exit_code == 1
    assert "FAIL my.lead :: an address the source mangled" in result.output
    assert located(spec) in result.output


def test_a_built_in_spec_is_named_by_its_repository_path(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_text(ROWS)
    result = invoke("ingest", str(src), "--mapping", "csv.lead", "--out", str(tmp_path / "o"))
    builtin = SPECS_DIR / "csv" / "lead.yaml"
    assert f"mappings/specs/csv/lead.yaml:{email_line(builtin)}: field `email`" in result.output


def _config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    return cfg


PIPELINE = (
    "pipelines:\n  leads:\n    source: {connector: csv_file, path: in/*.csv}\n"
    "    mapping: csv.lead\n"
)


@pytest.mark.parametrize(
    ("args", "body", "says", "fix"),
    [
        (("check", "{dir}/absent.yaml"), None, "cannot read config file", "check the path"),
        (
            ("check", "{cfg}"),
            "store: sqlite:///x.db\npipelines:\n  leads:\n    source: {connector: csv_file\n",
            "line 5: invalid YAML",
            "correct the YAML near line 5",
        ),
        (
            ("check", "{cfg}"),
            "store: sqlite:///x.db\n" + PIPELINE.replace("csv_file", "csv_fiel"),
            "unknown connector 'csv_fiel'; did you mean 'csv_file'?",
            "write 'csv_file' instead of 'csv_fiel' in the configuration",
        ),
        (
            ("check", "{cfg}"),
            "store: sqlite:///x.db\n"
            + PIPELINE
            + '    routes: [{otherwise: [webhook.a]}]\nchannels:\n  webhook.a: {url: "https://x.example/h",'
            ' secret: "${env:JUNCTION_TEST_UNSET_SECRET}"}\n',
            "environment variable JUNCTION_TEST_UNSET_SECRET is not set",
            "export JUNCTION_TEST_UNSET_SECRET=... before running",
        ),
        (
            ("run", "{cfg}", "--once"),
            "store: postgresql://postgres@127.0.0.1:1/none\n" + PIPELINE,
            "UnavailableError: the store could not be migrated",
            "check that the database named by `store:` in the configuration is running",
        ),
        (
            ("ingest", "{dir}/absent.csv", "--mapping", "csv.lead"),
            None,
            "no such file:",
            "check the path",
        ),
        (
            ("ingest", "{cfg}", "--mapping", "csv.laed"),
            "lead_id\nL1\n",
            "unknown mapping spec 'csv.laed'",
            "use a built-in spec id",
        ),
    ],
    ids=[
        "config-missing",
        "config-bad-yaml",
        "unknown-connector",
        "secret-env-unset",
        "store-unreachable",
        "input-missing",
        "unknown-spec",
    ],
)
def test_common_errors_are_one_line_with_the_fix_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    body: str | None,
    says: str,
    fix: str,
) -> None:
    monkeypatch.delenv("JUNCTION_TEST_UNSET_SECRET", raising=False)
    cfg = _config(tmp_path, body) if body is not None else tmp_path / "c.yaml"
    result = invoke(*(a.format(dir=tmp_path, cfg=cfg) for a in args))
    assert result.exit_code == 2, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.strip()]
    assert says in line
    assert f"— fix: {fix}" in line
    assert "Traceback" not in result.output


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import junction.pipeline.check as check_module

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(check_module, "check_config", broken)
    monkeypatch.setattr(cli_errors, "debug", False)
    result = invoke("check", str(tmp_path / "c.yaml"))
    assert result.exit_code == 1
    assert result.output.strip() == (
        "InternalError: unexpected RuntimeError (a bug) — fix: run again with --debug for the "
        "traceback, and report it"
    )
    debug = runner.invoke(app, ["--debug", "check", str(tmp_path / "c.yaml")])
    assert isinstance(debug.exception, RuntimeError)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("nosuch",), "No such command 'nosuch'"),
        (("mappings", "nosuch"), "No such command 'nosuch'"),
        (("run", "--bogus", "c.yaml"), "No such option: --bogus"),
        (("run",), "Missing argument"),
    ],
)
def test_a_usage_error_is_the_command_lines_own_message_not_a_bug(
    args: tuple[str, ...], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typer releases that carry their own copy of click raise usage errors that are not
    # click's classes: they must still reach the person as usage, with click's exit code 2
    monkeypatch.setattr(cli_errors, "debug", False)
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Usage: " in result.output
    assert "InternalError" not in result.output
    assert "a bug" not in result.output


def test_a_typed_error_no_command_caught_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import schemas.export
    from junction.core.errors import ConfigError

    def broken(*_a: object, **_k: object) -> list[str]:
        raise ConfigError(
            "cannot write the schema files", context={"fix": "make the folder writable"}
        )

    monkeypatch.setattr(schemas.export, "export_schemas", broken)
    monkeypatch.setattr(cli_errors, "debug", False)
    result = invoke("schemas", "export", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.output.strip() == (
        "ConfigError: cannot write the schema files — fix: make the folder writable"
    )


def test_an_invalid_configuration_lists_its_lines_under_the_fix(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "store: sqlite:///x.db\n" + PIPELINE + "    batch_size: nope\n")
    result = invoke("check", str(cfg))
    assert result.exit_code == 2
    first, *details = [ln for ln in result.output.splitlines() if ln.strip()]
    assert first.startswith("ConfigError: invalid configuration — fix: correct the lines listed")
    assert any(ln.startswith(f"{cfg}:6: pipelines.leads.batch_size") for ln in details)
