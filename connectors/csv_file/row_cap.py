"""The CSV connector's row cap: a file with more records than ``max_rows`` is refused whole.

The cap is checked on the file's plan, before any row is read, so a file over it is never half
ingested.  Each step runs only when the one before cannot tell, so files far under the cap (nearly
all of them) pay nothing or a count of one short part:

1. **bytes**: every record takes at least one byte (its line break, or its last character), so a
   file with no more data bytes than the cap is within it;
2. **line breaks**: every record ends at a line break or at the end of the file, so the line
   breaks (LF, and CR not followed by LF) after the data's start, plus one when the file does
   not end with one, bound the records from above.  A plan cut into parts already knows the
   exact records before its last part, so only that part is counted (numpy compares, ~0.3 ns
   a byte);
3. **records**: the bound is over the cap (quoted values spanning lines, or a file really too
   big): the records are counted by reading the file, and counting stops at the first record
   past the cap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from connectors.base import RawBatch
from connectors.csv_file.parts import CsvPlan
from junction.core.errors import TooManyRowsError

_PIECE = 1 << 20
_LF, _CR = 10, 13


def check_row_cap(
    plan: CsvPlan, max_rows: int | None, read_part: Callable[[int], Iterator[RawBatch]]
) -> None:
    """Raise TooManyRowsError when the planned file holds more than ``max_rows`` records.

    Args:
        plan: the file's plan (its ranges, when cut, start at records and count the rows before).
        max_rows: the cap (None: no cap).
        read_part: reads part ``k`` of the plan from its start (for the exact count only).
    """
    if max_rows is None:
        return
    scan = plan.scan
    start = plan.ranges[0].start if plan.ranges else scan.encoding.bom_len
    if scan.size - start <= max_rows:
        return
    # a last record without a line break after it counts too
    unended = int(_last_byte(scan.path, scan.size) not in (_LF, _CR))
    if plan.ranges:
        last = plan.ranges[-1]
        bound = last.rows_before + line_breaks(scan.path, last.start, last.end) + unended
    else:
        bound = line_breaks(scan.path, start, scan.size) + unended
    if bound <= max_rows:
        return
    rows = 0
    for part in range(plan.parts):
        for batch in read_part(part):
            rows += len(batch) + len(batch.errors)
            if rows > max_rows:
                raise TooManyRowsError(
                    f"the file holds more than {max_rows:,} records (max_rows)",
                    context={"file": scan.path, "limit": max_rows, "rows_at_least": rows},
                )


def _last_byte(path: str, size: int) -> int:
    with open(path, "rb", buffering=0) as raw:
        return os.pread(raw.fileno(), 1, size - 1)[0]


def line_breaks(path: str, start: int, end: int) -> int:
    """LF bytes plus CR bytes not followed by LF in ``[start, end)`` of ``path``.

    A CR at a piece's end counts as lone (an upper bound: it may precede the next piece's LF).
    In UTF-16 a ``0x0A`` or ``0x0D`` byte may belong to another character: still an upper bound.
    """
    import numpy as np  # the planner's dependency: only files over the byte step reach it

    total = 0
    with open(path, "rb", buffering=0) as raw:
        pos = start
        while pos < end:
            piece = os.pread(raw.fileno(), min(_PIECE, end - pos), pos)
            if not piece:
                break
            a = np.frombuffer(piece, dtype=np.uint8)
            total += int(np.count_nonzero(a == _LF))
            if b"\r" in piece:
                after = np.flatnonzero(a == _CR) + 1
                inside = after[after < len(a)]
                total += int(np.count_nonzero(a[inside] != _LF)) + len(after) - len(inside)
            pos += len(piece)
    return total
