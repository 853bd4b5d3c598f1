"""``junction audit verify``: check the audit log's hash chain."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from junction.cli.clients import ConfigOpt, fail, open_store
from junction.core.errors import JunctionError

app = typer.Typer(help="The audit log.", no_args_is_help=True)
console = Console()


@app.command("verify")
def verify(config: ConfigOpt = Path("junction.yaml")) -> None:
    """Re-compute the audit log's hash chain; exit 1 and name the first altered entry if broken."""
    from junction.store.audit import AuditLog

    with open_store(config) as store:
        try:
            result = AuditLog(store).check()
        except JunctionError as exc:
            fail(exc)
    if result.first_broken_id is not None:
        console.print(
            f"[bold red]audit log broken[/] at entry {result.first_broken_id}: it, or an entry "
            "before it, was altered, removed or reordered"
        )
        raise typer.Exit(1)
    console.print(f"audit log intact: {result.entries} entries", markup=False)
    # the head hash lets an operator detect truncation later: keep it somewhere else
    typer.echo(f"head: {result.head_hash or '-'}")
