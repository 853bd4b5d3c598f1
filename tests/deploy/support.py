"""What the deploy tests compare the files against: paths, exported metric names, CLI commands."""

from __future__ import annotations

from pathlib import Path

import typer

from junction.cli.main import app as cli_app
from junction.core import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"

# the series each metric type exposes (prometheus-client adds _created to counters and histograms)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported_metric_names() -> set[str]:
    """Every series name ``/metrics`` can carry: Junction's registry plus the scrape-time
    collectors (the outbox lag, the API's in-flight load)."""
    families = [
        *metrics.REGISTRY.collect(),
        *metrics.OutboxLagCollector(lambda: 0.0).collect(),
        *metrics.ApiLoadCollector(lambda: 0, lambda: {"shed": 1}).collect(),
    ]
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def serve_commands() -> set[str]:
    """The top-level ``junction`` commands (and groups)."""
    group = typer.main.get_command(cli_app)
    return set(getattr(group, "commands", {}))
