"""Issue 11 fault suite: clocks that jump, under an incremental poll (the Salesforce window).

Polling connectors keep a watermark of the *source's* stamps (``SystemModstamp``) and re-query
``>= watermark - overlap`` remembering the (id, version) pairs read inside the overlap.  Here a
seeded simulation drives the connector's own ``Window`` against an in-memory source that answers
the connector's query (stamps at or after the floor, ordered by stamp and id, in pages), while:

- the source's clock jumps back (by up to 0.4 x the overlap: records stamped in its past),
  or forward by up to two hours and back again (records stamped in the future, then normal);
- changes become visible late (a long transaction: stamped at its start, seen at its commit,
  up to 0.2 x the overlap later);
- our clock (the ``clock`` seam) jumps back by up to an hour, or forward by up to 0.3 x the
  overlap;
- the poll resumes from the saved cursor after every page, as the runner does.

After the last change and a quiet period, every record's last version must have been read
(nothing skipped) and no (id, version) read twice (nothing repeated).  The forward jump found a
loss: the watermark followed the future stamps, and once the source's clock was set right its
new records fell below ``watermark - overlap`` and were never read.  The window's floor now
follows our clock when the watermark is ahead of it, and never moves back.

The limit (documented, not tested): the source's clock behind, plus the longest commit delay,
plus our clock ahead, must stay within ``overlap_s``; past that a record can be stamped below
the floor.  Size the overlap for the worst skew expected (our clock *behind* costs nothing).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from connectors.salesforce.connector import Window, clock_stamp
from tests.faults.support import SEEDS

pytestmark = [pytest.mark.faults]
OVERLAP_S = 300.0
T0 = 1_780_000_000.0


@dataclass
class Source:
    """Records as the source holds them: id -> (stamp, visible from real time)."""

    rows: dict[str, tuple[str, float]] = field(default_factory=dict)

    def query(self, lower: str | None, now: float) -> list[tuple[str, str]]:
        # SOQL literals have whole seconds: the bound is floored, as soql_datetime does
        bound = None if lower is None else lower[:19] + ".000Z"
        hits = [
            (stamp, rid)
            for rid, (stamp, visible) in self.rows.items()
            if visible <= now and (bound is None or stamp >= bound)
        ]
        return sorted(hits)


@dataclass
class Clocks:
    now: float = T0  # real time
    source_skew: float = 0.0
    hub_skew: float = 0.0

    def hub(self) -> float:
        return self.now + self.hub_skew


def _poll(
    source: Source, cursor: dict[str, object] | None, clocks: Clocks, page: int, reads: Counter[str]
) -> dict[str, object] | None:
    """One poll: query from the cursor's floor, accept page by page, save the cursor each page."""
    window = Window.from_cursor(cursor, overlap_s=OVERLAP_S, max_seen=1_000_000, clock=clocks.hub)
    hits = source.query(window.lower_bound(), clocks.now)
    for start in range(0, len(hits), page):
        for stamp, rid in hits[start : start + page]:
            if window.accept(rid, stamp):
                reads[f"{rid}@{stamp}"] += 1
        cursor = window.to_cursor()
        window = Window.from_cursor(
            cursor, overlap_s=OVERLAP_S, max_seen=1_000_000, clock=clocks.hub
        )
    return cursor


def _run(seed: int) -> str | None:
    rng = random.Random(seed)
    source, clocks = Source(), Clocks()
    reads: Counter[str] = Counter()
    cursor: dict[str, object] | None = None
    page = rng.randint(1, 20)
    next_id = 0
    for step in range(300):
        clocks.now += rng.uniform(0.5, 20.0)
        if rng.random() < 0.05:  # the source's clock jumps, or is set right
            clocks.source_skew = rng.choice(
                [0.0, -rng.uniform(0, 0.4 * OVERLAP_S), rng.uniform(OVERLAP_S, 7200.0)]
            )
        if rng.random() < 0.05:  # ours jumps
            clocks.hub_skew = rng.choice(
                [0.0, -rng.uniform(0, 3600.0), rng.uniform(0, 0.3 * OVERLAP_S)]
            )
        for _ in range(rng.randint(0, 3)):
            if next_id and rng.random() < 0.4:
                rid = f"r{rng.randrange(next_id):05d}"
            else:
                rid, next_id = f"r{next_id:05d}", next_id + 1
            stamp = clock_stamp(clocks.now + clocks.source_skew)
            # visible later: a long transaction (stamped at its start) commits within the overlap
            late = rng.uniform(0, 0.2 * OVERLAP_S) if rng.random() < 0.2 else 0.0
            source.rows[rid] = (stamp, clocks.now + late)
        if step % rng.randint(1, 5) == 0:
            cursor = _poll(source, cursor, clocks, page, reads)
    # the clocks are set right, every change commits, and the poll catches up
    clocks.source_skew = clocks.hub_skew = 0.0
    for _ in range(3):
        clocks.now += OVERLAP_S
        cursor = _poll(source, cursor, clocks, page, reads)
    missed = [
        f"{rid}@{stamp}" for rid, (stamp, _v) in source.rows.items() if not reads[f"{rid}@{stamp}"]
    ]
    twice = [key for key, n in reads.items() if n > 1]
    if missed or twice:
        return (
            f"{len(missed)} last versions never read (e.g. {missed[:2]}), {len(twice)} read twice"
        )
    return None


def test_jumping_clocks_neither_skip_nor_repeat_a_polled_record() -> None:
    problems = [f"seed {seed}: {p}" for seed in range(SEEDS) if (p := _run(seed))]
    assert not problems, "\n".join(problems)
