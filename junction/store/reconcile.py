"""Reconciliation: does the store account for every source row, once? (issue 11)

For each pipeline it compares what the sources held with what the store has:

- **expected keys**: for every file the ledger marks ``done``, the keys ``<sha16>:<n>`` of its
  ``rows`` records (file connectors key rows by content hash and record number); a failed file
  is accounted for by its one file-level quarantine row.  Callers may add the keys of polled
  sources (``expected``), e.g. a fault test's inputs;
- every expected key must be a stored record or an open/resolved quarantine row (``missing``);
  a stored record no source row explains is ``unexpected`` (only for pipelines with
  expectations); a key both stored and quarantined before it was stored (extract, normalize,
  validate) while the quarantine row is still open is ``contradictory``;
- with scoring, every stored record has a score or a quarantine row of the score or route stage
  (``unscored``); every score and delivery belongs to a stored record (``orphans``);
- no delivery was acknowledged twice (``duplicate_sends``: more than one delivered attempt);
- a delivery that went dead (retries ran out, the endpoint gone) is in quarantine, where it
  can be replayed (``dead_unquarantined`` otherwise).

Deliveries still pending and relay rows not yet published are reported as in flight, not as
differences.  Only keys are read (no payloads), pipeline by pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from junction.store import tables as t
from junction.store.relay_marks import unpublished
from junction.store.repo import Store

SAMPLE = 20  # keys listed per kind of difference (the counts are exact)
_EARLY_STAGES = ("extract", "normalize", "validate")
_SCORE_STAGES = ("score", "route", "bus")


@dataclass
class Difference:
    """How many keys differ in one way, and a few of them."""

    count: int = 0
    sample: list[str] = field(default_factory=list)

    def add(self, keys: Iterable[str]) -> None:
        """Count ``keys`` and keep the first few (sorted)."""
        keys = sorted(keys)
        self.count += len(keys)
        room = SAMPLE - len(self.sample)
        if room > 0:
            self.sample.extend(keys[:room])


@dataclass
class Reconciliation:
    """One pipeline's accounting."""

    pipeline: str
    files: int = 0
    expected: int = 0
    records: int = 0
    scores: int = 0
    quarantined: int = 0
    deliveries: int = 0
    in_flight_deliveries: int = 0
    dead_deliveries: int = 0  # retries ran out or the endpoint is gone: quarantined, replayable
    unpublished_relay: int = 0
    missing: Difference = field(default_factory=Difference)
    unexpected: Difference = field(default_factory=Difference)
    contradictory: Difference = field(default_factory=Difference)
    unscored: Difference = field(default_factory=Difference)
    orphans: Difference = field(default_factory=Difference)
    duplicate_sends: Difference = field(default_factory=Difference)
    dead_unquarantined: Difference = field(default_factory=Difference)

    @property
    def clean(self) -> bool:
        """No unexplained difference and no duplicate effect."""
        return not any(
            d.count
            for d in (
                self.missing,
                self.unexpected,
                self.contradictory,
                self.unscored,
                self.orphans,
                self.duplicate_sends,
                self.dead_unquarantined,
            )
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly, with ``clean``."""
        return {**asdict(self), "clean": self.clean}


def reconcile(
    store: Store,
    pipeline: str,
    *,
    scored: bool,
    expected: Iterable[str] | None = None,
) -> Reconciliation:
    """Account for pipeline ``pipeline``'s rows (see the module docstring).

    Args:
        store: The store.
        pipeline: The pipeline's name.
        scored: Whether the pipeline scores (then every record needs a score).
        expected: Source keys (without the ``<pipeline>:`` prefix) the caller knows the
            sources held, beside the file ledger's.
    """
    out = Reconciliation(pipeline)
    prefix = f"{pipeline}:"
    want: set[str] = {prefix + k for k in expected} if expected is not None else set()
    have_expectations = expected is not None
    failed_files: set[str] = set()
    with store.begin() as conn:
        for sha, status, rows in conn.execute(
            select(t.files.c.sha256, t.files.c.status, t.files.c.rows).where(
                t.files.c.pipeline == pipeline
            )
        ):
            out.files += 1
            have_expectations = True
            if status == "done":
                head = f"{prefix}{sha[:16]}:"
                want.update(f"{head}{n}" for n in range(1, int(rows) + 1))
            else:
                failed_files.add(sha[:16])
        records = set(
            conn.execute(select(t.records.c.id).where(t.records.c.pipeline == pipeline)).scalars()
        )
        quarantine = conn.execute(
            select(t.quarantine.c.record_key, t.quarantine.c.stage, t.quarantine.c.status).where(
                t.quarantine.c.pipeline == pipeline
            )
        ).all()
        score_ids = set(
            conn.execute(
                select(t.scores.c.record_id).where(
                    t.scores.c.record_id.like(f"{_like(prefix)}%", escape="\\")
                )
            ).scalars()
        )
        deliveries = conn.execute(
            select(t.deliveries.c.id, t.deliveries.c.record_id, t.deliveries.c.status).where(
                t.deliveries.c.pipeline == pipeline
            )
        ).all()
        sends = conn.execute(
            select(t.attempts.c.delivery_id, func.count())
            .join(t.deliveries, t.deliveries.c.id == t.attempts.c.delivery_id)
            .where(t.deliveries.c.pipeline == pipeline, t.attempts.c.outcome == "delivered")
            .group_by(t.attempts.c.delivery_id)
            .having(func.count() > 1)
        ).all()
        out.unpublished_relay = int(
            conn.execute(
                select(func.count()).select_from(t.stage_relay).where(unpublished())
            ).scalar_one()
        )
    out.expected = len(want)
    out.records = len(records)
    out.scores = len(score_ids)
    out.quarantined = len(quarantine)
    out.deliveries = len(deliveries)
    quarantined = {key for key, _, _ in quarantine}
    early_open = {
        key for key, stage, status in quarantine if stage in _EARLY_STAGES and status == "open"
    }
    late = {key for key, stage, _ in quarantine if stage in _SCORE_STAGES}
    if have_expectations:
        out.missing.add(want - records - quarantined)
        out.unexpected.add(
            k for k in records - want if not _in_failed_file(k, prefix, failed_files)
        )
    out.contradictory.add(records & early_open)
    if scored:
        out.unscored.add(records - score_ids - late)
    out.orphans.add(score_ids - records)
    out.orphans.add(d for d, rid, _ in deliveries if rid not in records)
    out.in_flight_deliveries = sum(1 for *_, status in deliveries if status in ("pending", "held"))
    dead = {str(d) for d, _, status in deliveries if status == "dead"}
    out.dead_deliveries = len(dead)
    out.dead_unquarantined.add(dead - {key for key, stage, _ in quarantine if stage == "deliver"})
    out.duplicate_sends.add(str(d) for d, _ in sends)
    return out


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _in_failed_file(record_id: str, prefix: str, failed: set[str]) -> bool:
    return record_id[len(prefix) : len(prefix) + 16] in failed
