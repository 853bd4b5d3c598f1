"""The Kafka side of erasing a person, from a hub's configuration (API and CLI share it)."""

from __future__ import annotations

from collections.abc import Callable

from junction.pipeline.config import HubConfig
from junction.store.erasure import Found
from junction.store.erasure_kafka import Bus, hook


def tombstone_hook(cfg: HubConfig) -> Callable[[Found], int]:
    """``erase(before_commit=...)``: tombstones on the Kafka channels' and stage topics."""
    bus = (
        Bus(
            cfg.bus.bootstrap_servers,
            cfg.bus.topic_prefix,
            cfg.bus.options,
            cfg.bus.publish_timeout_s,
        )
        if cfg.bus is not None
        else None
    )
    return hook(channels=cfg.channels, bus=bus)
