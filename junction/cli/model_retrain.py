"""``junction model retrain``: retrain a pipeline's model from the store now.

The same retraining the drift schedule runs on an alert with ``drift.retrain`` set
(:func:`junction.pipeline.retrain.retrain`): the pipeline's records labelled by their outcomes
train a new version with the recipe of the version the pipeline scores with, and the promotion
gate decides whether it becomes production (its holdout ROC AUC must beat production's by
``--margin``) or stays in staging.  A ``model.retrained`` event and a ``model.retrain`` audit
entry record every attempt.

Exit codes: 0 when a version was written (promoted or staged), 1 when none was (too few
labelled records, or training failed: the message says why), 2 for a configuration error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from junction.cli.clients import ConfigOpt, cli_actor, fail
from junction.cli.model import app
from junction.cli.progress import progress
from junction.core.errors import JunctionError


@app.command("retrain")
def retrain_command(
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="The pipeline to retrain.")],
    config: ConfigOpt = Path("junction.yaml"),
    margin: Annotated[
        float | None,
        typer.Option(min=0.0, help="Holdout AUC the new version must gain to promote."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Retrain a pipeline's model on its labelled records; the promotion gate decides its stage."""
    from junction.pipeline.config import load_config
    from junction.pipeline.retrain import retrain
    from junction.store.repo import Store

    try:
        cfg = load_config(config)
        store = Store.open(cfg.store)
        try:
            with progress(f"retraining {pipeline}", quiet=as_json):
                result = retrain(
                    store, cfg, pipeline, actor=cli_actor(), margin=margin, trigger="manual"
                )
        finally:
            store.close()
    except JunctionError as exc:
        fail(exc)
    if as_json:
        typer.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        base = f"v{result.base_version}" if result.base_version else "-"
        made = f" -> v{result.version}" if result.version else ""
        typer.echo(f"{result.model} {base}{made}: {result.outcome}")
        typer.echo(f"  rows: {result.n} ({result.positives} positive)")
        if "roc_auc" in result.metrics:
            typer.echo(f"  holdout roc_auc: {result.metrics['roc_auc']:.4f}")
        if result.thresholds is not None:
            cuts = ", ".join(
                f"{g} >= {t:.4f}" for g, t in zip("ABC", result.thresholds, strict=True)
            )
            typer.echo(f"  grades: {cuts}")
        typer.echo(f"  {result.message}")
    if result.version is None:
        raise typer.Exit(1)
