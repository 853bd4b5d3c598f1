"""What the API's routes share: the configuration, the hub (store, runners, scorer) and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from junction.pipeline.config import HubConfig
from junction.pipeline.hub import Hub
from junction.store.repo import Store


@dataclass
class ApiContext:
    """One per app; routes reach it with ``ctx_of(request)``."""

    cfg: HubConfig
    hub: Hub
    config_path: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # shared caches (compiled scorers, ...)

    @property
    def store(self) -> Store:
        """The hub's store."""
        return self.hub.store


def ctx_of(request: Request) -> ApiContext:
    """The app's context."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
