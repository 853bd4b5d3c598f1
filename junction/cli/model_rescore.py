"""``junction model rescore``: refresh the stored scores of a pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from junction.cli.clients import ConfigOpt, fail
from junction.cli.model import app
from junction.core.errors import JunctionError

console = Console()


@app.command("rescore")
def rescore_cmd(
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="The pipeline to refresh.")],
    config: ConfigOpt = Path("junction.yaml"),
) -> None:
    """Re-score a pipeline's stored records with its current model (no deliveries are sent)."""
    from sqlalchemy import func, select

    from junction.cli.progress import progress_bar
    from junction.core import tracing
    from junction.pipeline.config import load_config
    from junction.pipeline.hub import configure_tracing
    from junction.pipeline.rescore import rescore
    from junction.store import tables as t
    from junction.store.repo import Store

    try:
        hub = load_config(config)
        store = Store.open(hub.store)
        configure_tracing(hub.tracing)  # a refresh is one trace (ADR-0022)
    except JunctionError as exc:
        fail(exc)
    try:
        with store.begin() as conn:
            total = conn.execute(
                select(func.count()).where(t.records.c.pipeline == pipeline)
            ).scalar_one()
        with progress_bar() as bar:
            task = bar.add_task("rescore", total=total)
            summary = rescore(store, hub, pipeline, progress=lambda n: bar.advance(task, n))
    except JunctionError as exc:
        fail(exc)
    finally:
        store.close()
        tracing.shutdown()  # its spans are exported before the command returns
    console.print(
        f"{summary.pipeline}: {summary.scored} of {summary.read} records scored by "
        f"{summary.model} v{summary.model_version}; {summary.failed} could not be scored",
        markup=False,
    )
