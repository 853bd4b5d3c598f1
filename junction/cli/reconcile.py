"""``junction reconcile CONFIG``: account for every source row in the store (issue 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from junction.cli.errors import fail
from junction.cli.progress import tracked
from junction.core.errors import ConfigError, JunctionError
from junction.store.reconcile import Reconciliation

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def reconcile_command(
    config: Annotated[Path, typer.Argument(help="Pipeline configuration YAML.")],
    pipeline: Annotated[
        list[str] | None, typer.Option("--pipeline", help="Only these pipelines (repeatable).")
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="A file of source keys (one per line) the sources held, for polled sources; "
            "needs a single --pipeline.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per pipeline.")] = False,
) -> None:
    """Compare source keys with records, scores, deliveries and quarantine; exit 1 on any
    unexplained difference or duplicate effect."""
    from junction.pipeline.config import load_config
    from junction.store.reconcile import reconcile
    from junction.store.repo import Store

    try:
        cfg = load_config(config)
        names = pipeline or list(cfg.pipelines)
        unknown = [n for n in names if n not in cfg.pipelines]
        if unknown:
            raise ConfigError(f"no pipeline named {unknown[0]!r} in the config")
        expected = None
        if keys is not None:
            if len(names) != 1:
                raise ConfigError("--keys belongs to one pipeline: name it with --pipeline")
            try:
                lines = keys.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read the key file {keys}") from exc
            expected = [k.strip() for k in lines if k.strip()]
        store = Store.open(cfg.store)
        try:
            results = [
                reconcile(
                    store,
                    name,
                    scored=cfg.pipelines[name].scoring is not None,
                    expected=expected,
                )
                for name in tracked(names, "reconciling", quiet=as_json)
            ]
        finally:
            store.close()
    except JunctionError as exc:
        fail(exc, err_console)
    if as_json:
        for r in results:
            console.print_json(orjson.dumps(r.as_dict()).decode())
    else:
        _table(results)
    if not all(r.clean for r in results):
        raise typer.Exit(1)


def _table(results: list[Reconciliation]) -> None:
    table = Table(title="reconciliation")
    for col in ("pipeline", "expected", "records", "quarantined", "scores", "deliveries"):
        table.add_column(col, justify="right" if col != "pipeline" else "left")
    table.add_column("differences")
    for r in results:
        diffs = [
            f"{name} {d.count} (e.g. {', '.join(d.sample[:3])})"
            for name, d in (
                ("missing", r.missing),
                ("unexpected", r.unexpected),
                ("contradictory", r.contradictory),
                ("unscored", r.unscored),
                ("orphans", r.orphans),
                ("duplicate sends", r.duplicate_sends),
                ("dead, not quarantined", r.dead_unquarantined),
            )
            if d.count
        ]
        table.add_row(
            r.pipeline,
            str(r.expected),
            str(r.records),
            str(r.quarantined),
            str(r.scores),
            f"{r.deliveries} ({r.in_flight_deliveries} in flight)",
            "[red]" + "; ".join(diffs) + "[/]" if diffs else "[green]none[/]",
        )
    console.print(table)
