"""``junction status CONFIG``: the hub at a glance — runs, backlogs, what needs attention."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from junction.cli.errors import fail
from junction.core.errors import ConfigError, JunctionError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _ago(at: float | None) -> str:
    if at is None:
        return "-"
    s = max(0.0, time.time() - at)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _ready(url: str) -> dict[str, Any]:
    """The running service's ``/readyz`` answer (or why there is none)."""
    target = url.rstrip("/") + "/readyz"
    if not target.startswith(("http://", "https://")):
        raise ConfigError("--url must start with http:// or https://")
    try:
        with urllib.request.urlopen(target, timeout=5) as resp:  # noqa: S310 - scheme checked
            return {"ready": True, **json.loads(resp.read() or b"{}")}
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return {"ready": False, "status": exc.code, **body}
    except (urllib.error.URLError, OSError) as exc:
        return {"ready": False, "error": f"the service does not answer: {type(exc).__name__}"}


def status_command(
    config: Annotated[Path, typer.Argument(help="Pipeline configuration YAML.")],
    url: Annotated[
        str | None, typer.Option("--url", help="A running service's base URL: ask its /readyz.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Pipelines' last runs, leases and pauses, the outbox, quarantine and stage relay
    backlogs; exit 1 when something needs attention (a failed last run, dead deliveries, stage
    messages waiting, a service that is not ready)."""
    from junction.pipeline.config import load_config
    from junction.store.queries import last_runs
    from junction.store.repo import Store
    from junction.store.status import as_dict, backlog

    try:
        cfg = load_config(config)
        store = Store.open(cfg.store)
        try:
            runs = last_runs(store, list(cfg.pipelines))
            queues = backlog(store)
        finally:
            store.close()
        service = _ready(url) if url else None
    except JunctionError as exc:
        fail(exc, err_console)
    attention: list[str] = []
    for name in cfg.pipelines:
        run = runs.get(name)
        if run is not None and run["status"] == "failed":
            attention.append(f"{name}: last run failed ({run.get('error') or 'see the run'})")
    if queues.dead_deliveries:
        attention.append(
            f"{queues.dead_deliveries} dead deliveries (junction deliveries replay --status dead)"
        )
    if queues.unpublished_relay:
        attention.append(f"{queues.unpublished_relay} stage messages not yet published")
    if service is not None and not service.get("ready"):
        attention.append(f"the service is not ready: {service}")
    if as_json:
        out = {
            "pipelines": {
                name: {
                    "last_run": runs.get(name),
                    "lease": queues.leases.get(name),
                    "paused": name in queues.paused,
                }
                for name in cfg.pipelines
            },
            "backlog": as_dict(queues),
            "service": service,
            "attention": attention,
        }
        console.print_json(orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode())
    else:
        table = Table(title="pipelines")
        for col in ("pipeline", "last run", "finished", "read", "stored", "quarantined", "lease"):
            table.add_column(col)
        for name in cfg.pipelines:
            run = runs.get(name)
            counts = (run or {}).get("counts") or {}
            state = "paused" if name in queues.paused else (run["status"] if run else "never")
            table.add_row(
                name,
                state,
                _ago(run.get("finished_at")) if run else "-",
                str(counts.get("read", "-")),
                str(counts.get("stored", "-")),
                str(counts.get("quarantined", "-")),
                queues.leases.get(name) or "-",
            )
        console.print(table)
        lag = "-" if queues.oldest_due_s is None else f"{queues.oldest_due_s:.0f}s"
        console.print(
            f"outbox: {queues.pending_deliveries} pending (oldest due {lag}), "
            f"{queues.dead_deliveries} dead; stage relay: {queues.unpublished_relay} unpublished"
        )
        if queues.open_quarantine:
            parts = [f"{p}/{s} {n}" for (p, s), n in sorted(queues.open_quarantine.items())]
            console.print("quarantine (open): " + ", ".join(parts))
        if service is not None:
            console.print(f"service: {'ready' if service.get('ready') else 'NOT ready'}")
        for line in attention:
            console.print(f"[yellow]attention[/]: {line}")
    if attention:
        raise typer.Exit(1)
