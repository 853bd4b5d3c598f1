"""``junction api``: the control plane's OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

api_app = typer.Typer(help="The HTTP API.", no_args_is_help=True)
console = Console()


@api_app.command("openapi")
def openapi(
    out: Annotated[Path, typer.Option(help="Where the document goes.")] = Path("docs/openapi.json"),
    check_only: Annotated[
        bool, typer.Option("--check", help="Fail if the committed document is stale.")
    ] = False,
) -> None:
    """Write the OpenAPI document (or check the committed copy)."""
    from junction.api.openapi import export_openapi

    stale = export_openapi(out, check_only=check_only)
    if check_only and stale:
        Console(stderr=True).print(f"[red]{out} is stale[/]; run `junction api openapi`")
        raise typer.Exit(1)
    console.print(f"{out} up to date" if check_only else f"wrote {out}")
