"""Structured logging (structlog).  Log lines carry ids and counts, never record contents."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at the time (CLI runners and tests swap it)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)  # noqa: T201 - this is the log sink

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Configure structlog once for the process (stderr, key=value or JSON)."""
    global _configured
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """Return a bound structlog logger for ``name``."""
    if not _configured:
        configure()
    return structlog.get_logger(name)
