"""Deliveries continue their record's trace (ADR-0022).

A stored record keeps its batch's ``trace_id`` and ``span_id`` in its provenance JSON.  When
tracing is on, the delivery worker looks them up once per claimed set of rows (one query by
primary key) and sends each delivery under a ``junction.deliver`` span, child of the batch span,
whose ``traceparent`` header lets the receiver continue the same trace.  With tracing off,
nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select

from junction.core import tracing
from junction.store import tables as t
from junction.store.repo import Store

# rows of one ``IN (...)`` list (well under SQLite's and PostgreSQL's parameter limits)
_CHUNK = 500


def parents(store: Store, record_ids: Sequence[str]) -> dict[str, str]:
    """The ``traceparent`` of each record that was stored with a trace, by record id."""
    wanted = sorted({r for r in record_ids if r})
    out: dict[str, str] = {}
    if not wanted:
        return out
    cols = (t.records.c.id, t.records.c.provenance)
    with store.begin() as conn:
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            for rid, prov in conn.execute(select(*cols).where(t.records.c.id.in_(chunk))):
                header = traceparent_of(prov)
                if header is not None:
                    out[rid] = header
    return out


def traceparent_of(provenance: str | dict[str, Any] | None) -> str | None:
    """The ``traceparent`` a record's provenance names, or ``None`` (stored without a trace)."""
    if provenance is None:
        return None
    if isinstance(provenance, str):
        if '"trace_id"' not in provenance:
            return None
        try:
            provenance = orjson.loads(provenance)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(provenance, dict):
        return None
    trace_id, span_id = provenance.get("trace_id"), provenance.get("span_id")
    if not isinstance(trace_id, str) or not isinstance(span_id, str):
        return None
    return tracing.traceparent(trace_id, span_id)
