"""``junction channels rotate-secret|secrets``: webhook signing secrets rotated through the store.

``rotate-secret CHANNEL [--overlap 24h]`` makes a new signing secret and prints it once, on
standard output (never logged, never stored in clear: the store seals it with its encryption at
rest, which must be on).  The secrets in use keep signing beside the new one until the overlap
ends, so receivers switch at their pace; the running hub picks the rotation up within seconds.
The rotation is audited (``channel.rotate_secret`` by ``cli:<user>``) with the secret's id only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from sqlalchemy import Connection

from junction.cli.clients import ConfigOpt, cli_actor
from junction.cli.subjects import private_store
from junction.store.channel_secrets import RotatedSecret

app = typer.Typer(help="Outbound channels: signing secrets.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("rotate-secret")
def rotate_secret(
    channel: Annotated[str, typer.Argument(help="A webhook channel, e.g. webhook.sales.")],
    config: ConfigOpt = Path("junction.yaml"),
    overlap: Annotated[
        str,
        typer.Option(help="How long the old secret keeps signing beside the new one (24h, 90m)."),
    ] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Give a webhook channel a new signing secret and print it (shown this once only)."""
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.state import state_dir
    from junction.store import channel_secrets
    from junction.store.audit import AuditEntry, AuditLog

    with private_store(config) as (cfg, store):
        overlap_s = channel_secrets.parse_overlap(overlap)
        options = channel_secrets.webhook_options(cfg.channels, channel)
        log = AuditLog(store, Pseudonymizer.load(state_dir(cfg)))

        def audit(conn: Connection, out: RotatedSecret) -> None:
            detail = {
                "secret_id": out.secret_id,
                "overlap_s": out.overlap_s,
                "retiring": [sid for sid, _origin, _at in out.retiring],
            }
            entry = AuditEntry(cli_actor(), "channel.rotate_secret", channel, None, detail)
            log.append_in(conn, [entry])

        out = channel_secrets.rotate_secret(
            store, channel, options, overlap_s=overlap_s, audit=audit
        )
    if as_json:
        typer.echo(orjson.dumps(out.answer()).decode())
        return
    typer.echo(out.secret)
    until = max((at for _sid, _origin, at in out.retiring), default=None)
    err_console.print(
        f"new signing secret {out.secret_id} for {channel} (shown once, above); "
        + (
            f"the previous secret keeps signing until {_when(until)}: give the receiver the "
            "new one before then"
            if until is not None and until > out.created_at
            else "the previous secret no longer signs"
        ),
        markup=False,
    )


@app.command("secrets")
def list_secrets(
    channel: Annotated[str | None, typer.Argument(help="Only this channel.")] = None,
    config: ConfigOpt = Path("junction.yaml"),
) -> None:
    """The signing secrets in the store (ids and dates, never the secrets)."""
    from junction.store.channel_secrets import list_secrets as stored

    with private_store(config) as (_cfg, store):
        rows = stored(store, channel)
    if not rows:
        console.print("no rotated secrets: channels sign with their config's", markup=False)
        return
    for r in rows:
        state = "current" if r.retires_at is None else f"retires {_when(r.retires_at)}"
        console.print(
            f"{r.channel}  {r.id}  {r.origin}  created {_when(r.created_at)}  {state}",
            markup=False,
        )
