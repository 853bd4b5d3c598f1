"""Progress bars: drawn on a terminal, and nothing at all in a pipe or with ``--json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

import junction.cli.progress as progress_module
from junction.cli.main import app
from junction.cli.progress import progress, tracked

runner = CliRunner()

ROWS = (
    "lead_id,first_name,email,country\nL1,Jane,jane@@example.com,DE\nL2,John,john@example.com,DE\n"
)


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Bars drawn on a terminal whose screen is this buffer."""
    screen = io.StringIO()
    monkeypatch.setattr(
        progress_module,
        "console_factory",
        lambda: Console(file=screen, force_terminal=True, width=100),
    )
    return screen


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Bars asked to draw on a pipe (not a terminal): this buffer must stay empty."""
    screen = io.StringIO()
    monkeypatch.setattr(
        progress_module, "console_factory", lambda: Console(file=screen, force_terminal=False)
    )
    return screen


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.csv").write_text(ROWS)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(
        f"store: sqlite:///{tmp_path / 'hub.db'}\n"
        "pipelines:\n"
        "  leads:\n"
        "    source: {connector: csv_file, path: inbox/*.csv, settle_seconds: 0}\n"
        "    mapping: csv.lead\n"
        "channels: {}\n"
    )
    return cfg


def test_the_helper_draws_on_a_terminal_only(terminal: io.StringIO) -> None:
    with progress("copying", total=3) as advance:
        for _ in range(3):
            advance(1)
    assert "copying" in terminal.getvalue()
    assert "3/3" in terminal.getvalue()
    terminal.truncate(0)
    with progress("copying", total=3, quiet=True) as advance:  # --json output
        advance(3)
    assert terminal.getvalue().strip("\x00") == ""
    assert list(tracked([1, 2], "walking", quiet=True)) == [1, 2]


def test_the_helper_is_silent_in_a_pipe(pipe: io.StringIO) -> None:
    with progress("copying", total=3) as advance:
        advance(3)
    assert list(tracked(["a", "b"], "walking")) == ["a", "b"]
    assert pipe.getvalue() == ""


def test_run_replay_and_export_show_bars_on_a_terminal(hub: Path, terminal: io.StringIO) -> None:
    run = invoke("run", str(hub), "--once")
    assert run.exit_code == 0, run.output
    assert "leads: read 2, stored 1, quarantined 1" in run.output
    assert "records" in terminal.getvalue()  # the run's bar counts records
    replay = invoke("quarantine", "replay", str(hub), "1")
    assert replay.exit_code == 0, replay.output
    assert "replaying" in terminal.getvalue()
    export = invoke("export", str(hub), "--masked")
    assert export.exit_code == 0, export.output
    assert "exporting" in terminal.getvalue()
    # the bar is on stderr's terminal; stdout carries only the JSON lines
    assert [json.loads(line)["entity"] for line in export.stdout.splitlines()] == ["lead"]


def test_nothing_is_drawn_in_a_pipe_or_with_json(hub: Path, pipe: io.StringIO) -> None:
    run = invoke("run", str(hub), "--once")
    assert run.exit_code == 0, run.output
    invoke("quarantine", "replay", str(hub), "1")
    export = invoke("export", str(hub), "--masked")
    reconcile = invoke("reconcile", str(hub), "--json")
    assert pipe.getvalue() == ""
    for result in (run, export, reconcile):
        assert "\x1b[" not in result.output
    assert [json.loads(line)["entity"] for line in export.stdout.splitlines()] == ["lead"]


def test_json_output_draws_no_bar_even_on_a_terminal(hub: Path, terminal: io.StringIO) -> None:
    invoke("run", str(hub), "--once")
    terminal.truncate(0)
    terminal.seek(0)
    result = invoke("reconcile", str(hub), "--json")
    assert "reconciling" not in terminal.getvalue()
    assert json.loads(result.stdout)["pipeline"] == "leads"
