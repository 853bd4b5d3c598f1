"""Deliveries continue their record's trace (ADR-0022).

A stored record keeps its batch's ``trace_id`` and ``span_id`` in its provenance JSON.  When
tracing is on, the delivery worker looks them up once per claimed set of rows (one query by
primary key) and sends each delivery under a ``junction.deliver`` span, child of the batch span,
whose ``traceparent`` header lets the receiver continue the same trace.  A digest has no record
of its own: its send is a trace of its own, linked to its items' batch spans (``of_claimed``).
With tracing off, nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select

from junction.core import tracing
from junction.pipeline.hygiene import is_digest
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


def of_claimed(
    store: Store, rows: Sequence[dict[str, Any]]
) -> tuple[dict[str, str], dict[str, tuple[list[str], int]]]:
    """The parent ``traceparent`` of each claimed row (its record's batch span), and each claimed
    digest's links (its items' records' batch spans, one per span) with its item count."""
    digests = [r for r in rows if is_digest(r["id"])]
    items: dict[str, list[str]] = {r["id"]: [] for r in digests}
    if digests:
        c = t.deliveries.c
        with store.begin() as conn:
            for r in digests:  # its items: digested, of its channel (the channel's index)
                q = select(c.record_id).where(
                    c.channel == r["channel"], c.status == "digested", c.group_id == r["id"]
                )
                items[r["id"]] = [rid for (rid,) in conn.execute(q)]
    wanted = [r.get("record_id") or "" for r in rows if r["id"] not in items]
    wanted += [rid for rids in items.values() for rid in rids]
    by_record = parents(store, wanted)
    of_rows = {
        r["id"]: by_record[rid]
        for r in rows
        if r["id"] not in items and (rid := r.get("record_id") or "") in by_record
    }
    links = {
        did: (sorted({by_record[rid] for rid in rids if rid in by_record}), len(rids))
        for did, rids in items.items()
    }
    return of_rows, links
