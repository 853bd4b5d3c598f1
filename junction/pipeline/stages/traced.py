"""Stage workers continue the trace of the batch their records came from (ADR-0022).

Every stage message carries its trace in a W3C ``traceparent`` Kafka header (set by the ingest
role from its batch span, and by each stage from its own span).  A stage worker's consumed batch
may hold records of several ingest batches: with tracing on, it runs each trace's records as one
group under a ``junction.stage`` span, child of that trace's ``traceparent``; the records it
stores name that span in their provenance, and the messages it passes on carry it as their
header.  With tracing off, the worker runs its batch whole, as before, and nothing here runs.
"""

from __future__ import annotations

from typing import Any

from junction.core import tracing
from junction.pipeline.stages.topics import Item

HEADER_TRACEPARENT = "traceparent"
# the span of each role, named as in a single-process run (junction.pipeline.traces)
ROLE_SPAN = {"normalize": "junction.map", "score": "junction.score", "deliver": "junction.route"}


def groups(items: list[Item]) -> list[tuple[str | None, list[Item]]]:
    """The items of each trace, in first-seen order (``None``: messages without a trace)."""
    out: dict[str | None, list[Item]] = {}
    for it in items:
        out.setdefault(it.extra.get(HEADER_TRACEPARENT), []).append(it)
    return list(out.items())


def stage_span(pipeline: str, roles: tuple[str, ...], parent: str | None, n: int) -> Any:
    """The ``junction.stage`` span of one trace's records in one consumed batch."""
    return tracing.span(
        "junction.stage",
        {"junction.pipeline": pipeline, "junction.roles": ",".join(roles), "junction.records": n},
        parent=parent,
    )


def stamp(items: list[Item]) -> None:
    """Name the current span in the items' provenance (what their stored records keep)."""
    ids = tracing.current_ids()
    if ids is None:
        return
    trace_id, span_id = ids
    for it in items:
        it.provenance = {**it.provenance, "trace_id": trace_id, "span_id": span_id}


def with_trace(headers: dict[str, str], traceparent: str | None) -> dict[str, str]:
    """``headers`` plus the ``traceparent`` header when there is one."""
    if traceparent is not None:
        headers[HEADER_TRACEPARENT] = traceparent
    return headers
