"""``junction clients create|list|revoke``: the API's OAuth2 clients and API keys.

A client's secret is printed once, at creation; the store keeps only its hash.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Column, Table

from junction.cli.errors import print_error
from junction.core.errors import JunctionError

if TYPE_CHECKING:
    from junction.store.repo import Store

app = typer.Typer(help="API clients: OAuth2 client credentials and API keys.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Hub configuration YAML (its store holds clients).")
]


class Kind(StrEnum):
    """How a client authenticates."""

    oauth = "oauth"
    apikey = "apikey"


def cli_actor() -> str:
    """The audit actor for commands run by a person: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"


def fail(exc: JunctionError) -> None:
    """Print a typed error, with how to fix it, and exit 2."""
    print_error(exc, err_console)
    raise typer.Exit(2)


@contextmanager
def open_store(config: Path) -> Iterator[Store]:
    """The store named by ``config``, closed afterwards; typed errors exit 2."""
    from junction.pipeline.config import load_config
    from junction.store.repo import Store

    try:
        store = Store.open(load_config(config).store)
    except JunctionError as exc:
        fail(exc)
    try:
        yield store
    finally:
        store.close()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ") if ts else "-"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A label for the client (a partner, a system).")],
    role: Annotated[
        list[str], typer.Option("--role", "-r", help="admin, operator, viewer or ingest; repeat.")
    ],
    config: ConfigOpt = Path("junction.yaml"),
    kind: Annotated[Kind, typer.Option(help="oauth: client credentials; apikey: X-API-Key.")] = (
        Kind.oauth
    ),
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="Own limit, e.g. 100/second.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Create a client and print its id and secret (the secret is shown only this once)."""
    from junction.store.clients import ClientStore

    with open_store(config) as store:
        try:
            client, secret = ClientStore(store).create(
                name, role, kind=kind.value, rate_limit=rate_limit, actor=cli_actor()
            )
        except JunctionError as exc:
            fail(exc)
    secret_field = "api_key" if client.kind == "apikey" else "client_secret"
    if as_json:
        out = {"client_id": client.id, secret_field: secret, "roles": list(client.roles)}
        typer.echo(orjson.dumps(out).decode())
        return
    # plain echo, not Rich: a secret must never be wrapped or restyled
    typer.echo(f"client_id: {client.id}")
    typer.echo(f"{secret_field}: {secret}")
    typer.echo(f"roles: {', '.join(client.roles)}")
    err_console.print("Store the secret now: it is not shown again.", markup=False)


@app.command("list")
def list_clients(
    config: ConfigOpt = Path("junction.yaml"),
    include_revoked: Annotated[bool, typer.Option("--all", help="Show revoked clients too.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines (for scripts).")] = (
        False
    ),
) -> None:
    """List clients (never their secrets)."""
    from junction.store.clients import ClientStore

    with open_store(config) as store:
        try:
            clients = ClientStore(store).list(include_revoked=include_revoked)
        except JunctionError as exc:
            fail(exc)
    if as_json:
        for c in clients:
            typer.echo(orjson.dumps({**c.__dict__, "active": c.active}).decode())
        return
    table = Table("name", "kind", "roles", "rate limit", "last used", "status")
    table.columns.insert(0, Column("id", no_wrap=True))  # ids are copied from here: never cut
    for c in clients:
        table.add_row(
            c.id,
            c.name,
            c.kind,
            ", ".join(c.roles),
            c.rate_limit or "default",
            _when(c.last_used_at),
            "active" if c.active else "revoked",
        )
    console.print(table)


@app.command("revoke")
def revoke(
    client_id: Annotated[str, typer.Argument(help="The client id (jc_...).")],
    config: ConfigOpt = Path("junction.yaml"),
) -> None:
    """Revoke a client: its API key and tokens stop working within seconds."""
    from junction.store.clients import ClientStore

    with open_store(config) as store:
        try:
            done = ClientStore(store).revoke(client_id, actor=cli_actor())
        except JunctionError as exc:
            fail(exc)
    if not done:
        err_console.print(f"no active client {client_id}", markup=False)
        raise typer.Exit(1)
    console.print(f"revoked {client_id}", markup=False)
