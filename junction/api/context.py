"""What the API's routes share: the configuration, the hub (store, runners, scorer) and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import Request

from junction.pipeline.config import HubConfig
from junction.pipeline.hub import Hub
from junction.store.repo import Store

SCHEDULER = "scheduler"  # the key of the running service's SchedulerControl in ``extras``

RunRequest = Literal["queued", "running", "paused"]


class SchedulerControl(Protocol):
    """What ``junction serve`` offers routes: run now, pause and resume (``extras["scheduler"]``).

    Absent when the app runs without the service (tests, ``junction run``).
    """

    def request_run(self, pipeline: str) -> RunRequest:
        """Ask for a run as soon as possible; "running" means one is already queued or under way.

        Raises:
            ConfigError: no pipeline has that name.
        """
        ...

    def pause(self, pipeline: str) -> None:
        """Stop starting runs of ``pipeline`` (schedules and file drops); the current one ends."""
        ...

    def resume(self, pipeline: str) -> None:
        """Start runs of ``pipeline`` again; a schedule missed while paused fires once."""
        ...

    def ready(self) -> bool:
        """False once the service is shutting down."""
        ...


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
