"""``junction check``: validate a configuration and compile everything it names."""

from __future__ import annotations

from pathlib import Path

from junction.pipeline.config import load_config
from junction.pipeline.deliver import build_channels
from junction.pipeline.extract import build_connector
from junction.pipeline.normalize import Normalizer
from junction.pipeline.route import Router


def check_config(path: Path) -> list[str]:
    """Return a line per checked item; raise ConfigError (with line numbers) on a problem."""
    cfg = load_config(path)
    report = [f"{path}: configuration is valid"]
    for name, p in cfg.pipelines.items():
        build_connector(name, p).close()
        norm = Normalizer(p.mapping, [(r.name, r.expr) for r in p.rules])
        Router(p.routes, norm.entity, norm.fields)
        report.append(
            f"pipeline {name}: {p.source.connector} → {p.mapping} ({norm.entity}), "
            f"{len(p.rules)} rule(s), {len(p.routes)} route(s)"
        )
    channels = build_channels(cfg.channels)
    report.extend(f"channel {name}: {type(ch).__name__}" for name, ch in channels.items())
    return report
