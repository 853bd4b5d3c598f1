"""Hold the cyclic garbage collector while one batch runs.

A batch allocates tens of thousands of short-lived objects (rows, dicts, models, messages).
With the collector on, each 700 allocations trigger a young collection that walks every live
young object again, and the survivors are promoted into older generations that are walked
again later.  The batch's objects form no cycles (reference counting frees them), so the
walks find nothing.  Paused for the batch, the collector runs once afterwards over what is
left: measured, 25 % of a mapping batch's time (ADR-0006) and 22-25 % more records per
CPU-second in a stage worker (docs/benchmarks.md, "Kafka stages").  Cycles made meanwhile
are still collected, after the batch.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; enable it again after, if it was enabled."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
