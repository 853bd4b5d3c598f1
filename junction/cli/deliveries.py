"""``junction deliveries replay``: put dead, suppressed or skipped deliveries back in the queue.

With a delivery id it replays that one delivery; without, every delivery matching the filters
(``--status dead`` by default), oldest first, at most ``--limit``.  Each keeps its id, so a
receiver that already has it dedupes it.  The replay is audited (``delivery.replay`` or
``delivery.replay_bulk`` by ``cli:<user>``) in the replay's own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import Connection

from junction.cli.clients import ConfigOpt, cli_actor, fail, open_store
from junction.cli.progress import progress
from junction.core.errors import ConfigError, JunctionError

if TYPE_CHECKING:
    from junction.store.outbox_admin import ReplayAudit
    from junction.store.repo import Store

app = typer.Typer(help="Deliveries (the outbox).", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
AUDIT_IDS = 50


class Status(StrEnum):
    """Statuses a delivery is replayed from."""

    dead = "dead"
    suppressed = "suppressed"
    skipped = "skipped"


def parse_when(text: str | None, option: str) -> float | None:
    """An ISO-8601 time (UTC when it names no offset) as Unix seconds."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} is not an ISO-8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _audit(store: Store, action: str, target: str, detail: dict[str, Any]) -> ReplayAudit:
    from junction.store.audit import AuditEntry, AuditLog

    def audit(conn: Connection, ids: list[str]) -> None:
        more = {"replayed": len(ids), "ids": ids[:AUDIT_IDS]}
        entry = AuditEntry(cli_actor(), action, target, None, {**detail, **more})
        AuditLog(store).append_in(conn, [entry])

    return audit


@app.command("replay")
def replay(
    delivery_id: Annotated[
        str | None, typer.Argument(help="One delivery id; omit to replay every match.")
    ] = None,
    config: ConfigOpt = Path("junction.yaml"),
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    status: Annotated[Status | None, typer.Option(help="Replay from this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only deliveries created at or after (ISO-8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only deliveries created before (ISO-8601).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 1000,
) -> None:
    """Re-queue dead deliveries (or suppressed, or skipped ones), one or in bulk."""
    from junction.store.outbox_admin import replay_deliveries

    with open_store(config) as store:
        try:
            bounds = (parse_when(since, "--since"), parse_when(until, "--until"))
            if delivery_id is not None:
                _replay_one(store, delivery_id, status, channel, bounds)
                return
            wanted = (status or Status.dead).value
            detail = {"channel": channel, "status": wanted, "since": since, "until": until}
            with progress(f"re-queuing {wanted} deliveries"):
                n = replay_deliveries(
                    store,
                    channel=channel,
                    status=wanted,
                    limit=limit,
                    since=bounds[0],
                    until=bounds[1],
                    audit=_audit(store, "delivery.replay_bulk", channel or "*", detail),
                )
        except JunctionError as exc:
            fail(exc)
    console.print(f"re-queued {n} {wanted} deliveries", markup=False)


def _replay_one(
    store: Store,
    delivery_id: str,
    status: Status | None,
    channel: str | None,
    bounds: tuple[float | None, float | None],
) -> None:
    from junction.store.outbox_admin import REPLAYABLE, delivery_status, replay_deliveries

    before = delivery_status(store, delivery_id)
    if before is None:
        err_console.print(f"no delivery {delivery_id}", markup=False)
        raise typer.Exit(1)
    if before not in REPLAYABLE or (status is not None and status.value != before):
        err_console.print(f"delivery {delivery_id} is {before}: not replayed", markup=False)
        raise typer.Exit(1)
    audit = _audit(store, "delivery.replay", delivery_id, {"previous_status": before})
    n = replay_deliveries(
        store,
        ids=[delivery_id],
        status=before,
        channel=channel,
        since=bounds[0],
        until=bounds[1],
        limit=1,
        audit=audit,
    )
    if not n:
        err_console.print(f"delivery {delivery_id} does not match the filters", markup=False)
        raise typer.Exit(1)
    console.print(f"re-queued {delivery_id} (was {before})", markup=False)


@app.command("ack")
def ack(
    delivery_id: Annotated[str, typer.Argument(help="The alert's delivery id.")],
    config: ConfigOpt = Path("junction.yaml"),
) -> None:
    """Acknowledge an alert: it (and its escalation chain) escalates no further."""
    from junction.pipeline.hygiene_sweeps import acknowledge
    from junction.store.audit import AuditLog

    with open_store(config) as store:
        row, acked = acknowledge(store, delivery_id)
        if row is None:
            err_console.print(f"no delivery {delivery_id}", markup=False)
            raise typer.Exit(1)
        if not acked:
            err_console.print(f"delivery {delivery_id} was acknowledged before", markup=False)
            raise typer.Exit(1)
        AuditLog(store).append(cli_actor(), "delivery.ack", delivery_id)
    console.print(f"acknowledged {delivery_id}", markup=False)
