"""``junction worker CONFIG --role ROLE[,ROLE...]``: one stage worker process (ADR-0018)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from junction.cli.errors import fail
from junction.core.errors import JunctionError

err_console = Console(stderr=True, soft_wrap=True)


def worker(
    config: Annotated[Path, typer.Argument(help="Pipeline configuration YAML (with `bus:`).")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="ingest | normalize | score | deliver, or contiguous roles fused in one "
            "process, e.g. normalize,score",
        ),
    ],
    pipeline: Annotated[
        list[str] | None,
        typer.Option("--pipeline", help="Only these pipelines (repeatable); default all."),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="ingest: seconds between reads of the sources.")
    ] = 5.0,
    once: Annotated[
        bool, typer.Option("--once", help="ingest: read every source once, then exit.")
    ] = False,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            help=(
                "Consumer roles: exit after this many seconds without a message, once "
                "nothing is left unread on the worker's partitions."
            )
        ),
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")
    ] = 0,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics port binds.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Run stage roles that exchange records through Kafka topics until SIGTERM."""
    from junction.core.logging import set_pseudonymizer
    from junction.core.pseudonym import Pseudonymizer
    from junction.pipeline.hub import Hub
    from junction.pipeline.stages.topics import parse_roles
    from junction.pipeline.state import state_dir
    from junction.serve.stage_worker import run_ingest, run_stage_worker

    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        roles = parse_roles(role)
        if metrics_port:
            from prometheus_client import start_http_server

            from junction.core.metrics import REGISTRY

            start_http_server(metrics_port, addr=metrics_host, registry=REGISTRY)
        hub = Hub.from_file(config)
        set_pseudonymizer(Pseudonymizer.load(state_dir(hub.cfg)))  # log pseudonyms link across
        try:
            if roles == ("ingest",):
                ing = run_ingest(
                    hub, stop, pipelines=pipeline or None, interval_s=interval, once=once
                )
                err_console.print(
                    f"ingest: {ing.runs} runs, {ing.read} read, {ing.passed} passed on, "
                    f"{ing.quarantined} quarantined"
                )
            else:
                stats = run_stage_worker(
                    hub, roles, stop, pipelines=pipeline or None, idle_exit_s=idle_exit
                )
                err_console.print(
                    f"{','.join(roles)}: {stats.consumed} consumed, {stats.passed} passed, "
                    f"{stats.quarantined} quarantined, {stats.published} published"
                )
        finally:
            hub.close()
    except JunctionError as exc:
        fail(exc, err_console)
