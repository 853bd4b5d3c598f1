"""The spans of an ingest batch: one trace per batch, a child span per stage (ADR-0022).

Attributes are counts and names only (pipeline, connector, channel): never a payload value, a
source key or a file name, which may carry personal data.  With tracing off every helper here
returns :data:`junction.core.tracing.NO_SPAN` after one check.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from connectors.base import RawBatch
from junction.core import tracing


def read_started() -> int | None:
    """The time a batch's read starts (epoch ns), or ``None`` when tracing is off."""
    return time.time_ns() if tracing.enabled() else None


class _BatchSpan:
    """The root span of one batch; entering it also records the batch's ``junction.read``."""

    __slots__ = ("_read", "_read_ns", "_root")

    def __init__(self, root: Any, read: tuple[int, int], read_ns: int | None) -> None:
        self._root = root
        self._read = read
        self._read_ns = read_ns

    def __enter__(self) -> Any:
        root = self._root.__enter__()
        read, unreadable = self._read
        with tracing.span(
            "junction.read",
            {"junction.read": read, "junction.unreadable": unreadable},
            start_ns=self._read_ns,
        ):
            pass
        return root

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._root.__exit__(kind, exc, tb)


def batch(
    pipeline: str,
    connector: str,
    raw: RawBatch,
    read_ns: int | None,
    *,
    parent: str | None = None,
) -> Any:
    """The batch's root span, to enter around its prepare and commit.

    Args:
        pipeline: The pipeline's name.
        connector: The source connector's registry name.
        raw: The batch just read.
        read_ns: :func:`read_started` before the batch was read (the span starts there).
        parent: A ``traceparent`` the batch continues (an inbound request's), if any.
    """
    if not tracing.enabled():
        return tracing.NO_SPAN
    read = len(raw) + len(raw.errors)
    root = tracing.span(
        "junction.batch",
        {"junction.pipeline": pipeline, "junction.connector": connector, "junction.read": read},
        parent=parent,
        start_ns=read_ns,
    )
    return _BatchSpan(root, (read, len(raw.errors)), read_ns)


def stored(prepared: Any) -> dict[str, tracing.AttrValue]:
    """The counts of a prepared batch, as the ``junction.store`` span's attributes."""
    if not tracing.enabled():
        return {}
    return {
        "junction.records": len(prepared.records),
        "junction.scores": len(prepared.scores),
        "junction.deliveries": len(prepared.deliveries),
        "junction.quarantined": len(prepared.quarantined),
    }
