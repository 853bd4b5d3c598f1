"""``junction model drift``: the drift of each pipeline's production model (see junction.cli.model).

Without ``--run`` it shows the newest saved report of each scored pipeline (or of
``--pipeline``): the model version, the window, the status, and per feature its PSI, its KS
statistic (numerics and the predictions) and its status.  ``--run`` computes a report now with
the pipeline's ``scoring.drift`` settings (their defaults when it has none), saves it and, on a
warning or an alert, emits ``model.drift`` like the scheduled check does.  ``--history N`` lists
the newest N reports of each pipeline as one line each.  ``--json`` prints the reports as JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from junction.cli.clients import ConfigOpt, fail
from junction.cli.model import app
from junction.core.errors import ConfigError, JunctionError

if TYPE_CHECKING:
    from junction.pipeline.config import HubConfig
    from junction.store.repo import Store
    from scoring.drift import DriftReport

console = Console()

_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red"}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def _pipelines(cfg: HubConfig, pipeline: str | None) -> list[str]:
    if pipeline is not None:
        p = cfg.pipelines.get(pipeline)
        if p is None:
            raise ConfigError(f"no pipeline named {pipeline!r}")
        if p.scoring is None:
            raise ConfigError(f"pipeline {pipeline} does not score its records")
        return [pipeline]
    return [name for name, p in cfg.pipelines.items() if p.scoring is not None]


def _status(status: str) -> str:
    style = _STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _headline(report: DriftReport) -> str:
    window = (
        _span(report.window_end - report.window_start)
        if report.window_end is not None and report.window_start is not None
        else "-"
    )
    return (
        f"[bold]{report.pipeline}[/]: {report.model} v{report.model_version or '-'} · "
        f"{_when(report.computed_at)} · window {window} · n={report.n} · "
        f"status {_status(report.status)}"
    )


def show_report(report: DriftReport) -> None:
    """Print one report: a headline, then a table of its features (when it compared any)."""
    console.print(_headline(report), highlight=False)
    if report.reason:
        console.print(f"  {report.reason}", markup=False, highlight=False)
    features = report.all_features()
    if not features:
        return
    table = Table("feature", "kind", "PSI", "KS", "status", box=None, pad_edge=False)
    for f in features:
        table.add_row(f.name, f.kind, _num(f.psi), _num(f.ks), _status(f.status))
    console.print(table)
    drifted = [f.name for f in features if f.status != "ok"]
    if drifted:
        console.print(f"  drifted: {', '.join(drifted)}", markup=False, highlight=False)


def show_history(pipeline: str, reports: list[DriftReport]) -> None:
    """Print the newest reports of ``pipeline``, one line each."""
    table = Table(
        "computed", "version", "n", "status", "max PSI", "worst", title=pipeline, box=None
    )
    for r in reports:
        table.add_row(
            _when(r.computed_at),
            r.model_version or "-",
            str(r.n),
            _status(r.status),
            _num(r.max_psi),
            ", ".join(r.worst[:3]),
        )
    console.print(table)


def _collect(
    store: Store, cfg: HubConfig, names: list[str], run: bool, history: int
) -> dict[str, list[DriftReport]]:
    from junction.pipeline.drift_job import run_drift_check
    from junction.store.drift import list_reports

    if run:
        return {name: [run_drift_check(store, cfg, name)] for name in names}
    return {name: list_reports(store, pipeline=name, limit=history) for name in names}


@app.command("drift")
def drift(
    config: ConfigOpt = Path("junction.yaml"),
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline.")
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Compute (and save) a report now instead of showing.")
    ] = False,
    history: Annotated[
        int, typer.Option("--history", min=1, max=1000, help="Show the newest N reports.")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Show the drift of each pipeline's production model, or compute it now with --run."""
    from junction.pipeline.config import load_config
    from junction.store.repo import Store

    try:
        cfg = load_config(config)
        names = _pipelines(cfg, pipeline)
        store = Store.open(cfg.store)
        try:
            found = _collect(store, cfg, names, run, history)
        finally:
            store.close()
    except JunctionError as exc:
        fail(exc)
    if as_json:
        out = {name: [r.to_dict() for r in reports] for name, reports in found.items()}
        typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    if not names:
        console.print("no pipeline scores its records", markup=False)
        return
    for name, reports in found.items():
        if not reports:
            console.print(
                f"{name}: no drift reports yet (set scoring.drift, or run with --run)",
                markup=False,
            )
        elif history > 1 and not run:
            show_history(name, reports)
        else:
            show_report(reports[0])
