"""``junction model``: the scoring models' registry, training, A/B reports and drift.

The commands live in one module per concern and attach themselves to :data:`app`:
:mod:`junction.cli.model_registry` (list, show, promote, rollback, card),
:mod:`junction.cli.model_train` (train), :mod:`junction.cli.model_ab` (outcomes, ab-report),
:mod:`junction.cli.model_drift` (drift), :mod:`junction.cli.model_rescore` (rescore) and
:mod:`junction.cli.model_retrain` (retrain).
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Scoring models: registry, training, A/B tests, drift.", no_args_is_help=True
)


def _register() -> None:
    # each module adds its commands to ``app`` on import
    from junction.cli import (  # noqa: F401
        model_ab,
        model_drift,
        model_registry,
        model_rescore,
        model_retrain,
        model_train,
    )


_register()
