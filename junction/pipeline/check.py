"""``junction check``: validate a configuration and compile everything it names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from junction.pipeline.config import load_config
from junction.pipeline.deliver import build_channels
from junction.pipeline.extract import build_connector
from junction.pipeline.normalize import Normalizer
from junction.pipeline.route import Router
from outbound.base import OutboundChannel


def check_config(path: Path, *, connect: bool = False) -> tuple[list[str], list[str]]:
    """Return (lines per checked item, problems found); raise ConfigError on a bad config.

    With ``connect``, each pipeline's connector also checks its source (reachable, credentials
    accepted, streams readable); a failure there is a problem line, not an exception, so every
    source is checked.
    """
    cfg = load_config(path)
    report = [f"{path}: configuration is valid"]
    problems: list[str] = []
    for name, p in cfg.pipelines.items():
        connector = build_connector(name, p)
        try:
            if connect:
                result = connector.check()
                line = f"pipeline {name}: source {p.source.connector}: {result.message or 'ok'}"
                (report if result.ok else problems).append(line)
        finally:
            connector.close()
        norm = Normalizer(p.mapping, [(r.name, r.expr) for r in p.rules])
        Router(p.routes, norm.entity, norm.fields)
        report.append(
            f"pipeline {name}: {p.source.connector} → {p.mapping} ({norm.entity}), "
            f"{len(p.rules)} rule(s), {len(p.routes)} route(s)"
        )
    channels = build_channels(cfg.channels, egress=cfg.egress)
    report.extend(f"channel {name}: {type(ch).__name__}" for name, ch in channels.items())
    # channels may hold connections from the start (a Kafka producer): give them back
    asyncio.run(_close_all(channels.values()))
    return report, problems


async def _close_all(channels: Iterable[OutboundChannel]) -> None:
    for ch in channels:
        await ch.aclose()
