"""Outcomes: what became of scored records (a lead converted, an opportunity was won).

An outcome belongs to a *lead*, not to one stored version of it: its ``record_id`` is the lead's
stable id ``<pipeline>:<source_key>``.  For records without versions and without a mapped source
key that is the record id itself; versioned records (ids ``<pipeline>:<key>@<version>``) share
one lead id across versions, so the "converted" that a later CRM poll reports lands on the lead
that an earlier version scored.  An outcome row per (lead, kind) holds the newest observation:
:func:`upsert_outcomes` keeps the row with the latest ``observed_at`` (a tie takes the new one).

Outcomes arrive from the pipeline (``scoring.outcome`` in a pipeline's config: written in the
batch's transaction by ``Store.write_batch``), from ``POST /api/v1/outcomes`` and from
``junction model outcomes import``.

Reads: :func:`scored_outcomes` joins each lead's *earliest* score per variant (the prediction made
before the outcome was known) with its label, for A/B reports; :func:`training_rows` returns the
canonical payload of each lead's earliest stored version with its label, for training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.store import tables as t

if TYPE_CHECKING:
    from junction.store.repo import Store

# (record_id = lead id, kind, label, observed_at, source, recorded_at)
OutcomeRow = tuple[str, str, int, float, str, float]
OUTCOME_COLS = ("record_id", "kind", "label", "observed_at", "source", "recorded_at")
_CHUNK = 400  # ids per look-up statement (well under SQLite's variable limit)


def lead_id(pipeline: str, source_key: str) -> str:
    """The stable id outcomes are stored under: ``<pipeline>:<source_key>``."""
    return f"{pipeline}:{source_key}"


def record_lead(pipeline: str, record_id: str, source_key: str | None) -> str:
    """The lead id of a stored record (its id ``<pipeline>:<key>`` gives the key without one)."""
    if not source_key:
        source_key = record_id.removeprefix(f"{pipeline}:")
    return lead_id(pipeline, source_key)


def upsert_outcomes(conn: Connection, dialect: str, rows: Sequence[OutcomeRow]) -> int:
    """Write outcomes in the caller's transaction; the latest ``observed_at`` per lead wins.

    Returns how many rows were given (after keeping the newest of duplicates in ``rows``).
    """
    if not rows:
        return 0
    newest: dict[tuple[str, str], OutcomeRow] = {}
    for row in rows:
        key = (row[0], row[1])
        old = newest.get(key)
        if old is None or row[3] >= old[3]:
            newest[key] = row
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(t.outcomes)
    c = t.outcomes.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.record_id, c.kind],
        set_={
            "label": stmt.excluded.label,
            "observed_at": stmt.excluded.observed_at,
            "source": stmt.excluded.source,
            "recorded_at": stmt.excluded.recorded_at,
        },
        where=stmt.excluded.observed_at >= c.observed_at,
    )
    conn.execute(stmt, [dict(zip(OUTCOME_COLS, r, strict=True)) for r in newest.values()])
    return len(newest)


@dataclass(frozen=True)
class OutcomeIn:
    """One outcome to record: a record id (or lead id) or a pipeline plus source key."""

    kind: str
    label: int
    observed_at: float
    record_id: str | None = None
    pipeline: str | None = None
    source_key: str | None = None


def resolve_lead_ids(conn: Connection, record_ids: Iterable[str]) -> dict[str, str]:
    """Map stored record ids to their leads' ids (ids that are not stored records map to none)."""
    ids = sorted(set(record_ids))
    found: dict[str, str] = {}
    r = t.records.c
    for at in range(0, len(ids), _CHUNK):
        for rid, pipeline, source_key in conn.execute(
            select(r.id, r.pipeline, r.source_key).where(r.id.in_(ids[at : at + _CHUNK]))
        ):
            found[rid] = record_lead(pipeline, rid, source_key)
    return found


def record_outcomes(
    store: Store,
    items: Sequence[OutcomeIn],
    *,
    source: str,
    audit: Callable[[Connection], None] | None = None,
) -> int:
    """Write outcomes (API, CSV import) in one transaction; returns how many leads they name.

    A ``record_id`` that is a stored record's id is recorded under that record's lead; any
    other ``record_id`` is taken as a lead id as it is.  ``audit`` writes the import's audit
    entry in the same transaction.

    Raises:
        ValueError: an item names neither a record id nor a pipeline and source key, or its
            label is not 0 or 1.
    """
    now = time.time()
    with store.begin() as conn:
        known = resolve_lead_ids(conn, [i.record_id for i in items if i.record_id])
        rows: list[OutcomeRow] = []
        for n, item in enumerate(items):
            if item.label not in (0, 1):
                raise ValueError(f"item {n}: the label must be 0 or 1")
            if item.record_id:
                rid = known.get(item.record_id, item.record_id)
            elif item.pipeline and item.source_key:
                rid = lead_id(item.pipeline, item.source_key)
            else:
                raise ValueError(f"item {n}: give a record_id, or a pipeline and a source_key")
            rows.append((rid, item.kind, int(item.label), float(item.observed_at), source, now))
        recorded = upsert_outcomes(conn, store.dialect, rows)
        if audit is not None:
            audit(conn)
        return recorded


@dataclass(frozen=True)
class ScoredOutcome:
    """A lead's earliest score in one variant, and its outcome label."""

    lead: str
    variant: str
    model_version: str
    value: float
    scored_at: float
    label: int


def _labels(conn: Connection, pipeline: str, kind: str) -> dict[str, int]:
    o = t.outcomes.c
    prefix = f"{pipeline}:"
    rows = conn.execute(
        select(o.record_id, o.label).where(
            o.kind == kind, o.record_id.startswith(prefix, autoescape=True)
        )
    )
    return {rid: int(label) for rid, label in rows}


def scored_outcomes(
    store: Store, pipeline: str, kind: str = "converted", *, since: float | None = None
) -> list[ScoredOutcome]:
    """Each labelled lead's earliest score, with its variant and label (for A/B reports).

    A lead counts once, in the variant of its first score (the prediction made before the
    outcome was known): later scores (a new version of the lead, a re-score, a re-drawn split)
    never move it to the other arm, so the two arms stay disjoint.  With ``since`` a lead whose
    first score is older (scored before the test began) is left out.
    """
    s, r = t.scores.c, t.records.c
    with store.begin() as conn:
        labels = _labels(conn, pipeline, kind)
        if not labels:
            return []
        rows = conn.execute(
            select(r.id, r.source_key, s.variant, s.model_version, s.value, s.scored_at)
            .select_from(t.scores.join(t.records, t.records.c.id == s.record_id))
            .where(r.pipeline == pipeline)
            .order_by(s.scored_at, s.record_id, s.model_version)
        )
        first: dict[str, ScoredOutcome | None] = {}
        for rid, source_key, variant, version, value, scored_at in rows:
            lead = record_lead(pipeline, rid, source_key)
            label = labels.get(lead)
            if label is None or lead in first:
                continue
            if since is not None and scored_at < since:
                first[lead] = None  # scored before the test: not in either arm
                continue
            first[lead] = ScoredOutcome(
                lead, variant, version, float(value), float(scored_at), label
            )
    return [v for v in first.values() if v is not None]


def training_rows(
    store: Store, pipeline: str, kind: str = "converted", *, model: str | None = None
) -> list[tuple[dict[str, Any], int]]:
    """Labelled training rows: each lead's earliest canonical payload and its outcome label.

    The earliest version is the one that was scored before the outcome was known (a later
    version often carries the outcome itself, e.g. ``status: converted``, and would leak it).
    With ``model`` only leads that model scored are returned.
    """
    r, s = t.records.c, t.scores.c
    with store.begin() as conn:
        labels = _labels(conn, pipeline, kind)
        if not labels:
            return []
        query = select(r.id, r.entity, r.subject, r.source_key, r.payload).where(
            r.pipeline == pipeline
        )
        if model is not None:
            scored = select(s.record_id).where(s.model == model)
            query = query.where(r.id.in_(scored))
        seen: set[str] = set()
        out: list[tuple[dict[str, Any], int]] = []
        for row in conn.execute(query.order_by(r.received_at, r.id)).mappings():
            lead = record_lead(pipeline, row["id"], row["source_key"])
            label = labels.get(lead)
            if label is None or lead in seen:
                continue
            seen.add(lead)
            [opened] = store.open_record_rows(conn, [row])  # personal fields opened (encryption)
            out.append((dict(orjson.loads(opened["payload"])), label))
    return out


__all__ = [
    "OUTCOME_COLS",
    "OutcomeIn",
    "OutcomeRow",
    "ScoredOutcome",
    "lead_id",
    "record_lead",
    "record_outcomes",
    "resolve_lead_ids",
    "scored_outcomes",
    "training_rows",
    "upsert_outcomes",
]
