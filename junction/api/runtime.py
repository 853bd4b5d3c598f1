"""What routes share at run time: pipeline lookups, runners, push ingestors and per-pipeline locks.

The hub builds a pipeline's runner lazily and is not thread-safe, so routes that run work in
threads get runners (and one ``PushIngestor`` per pipeline) through here, under a lock.  Runs and
replays of one pipeline take its lock, so the API never runs two of them at once in a process.
"""

from __future__ import annotations

import threading

from junction.api.context import ApiContext
from junction.api.problems import ApiProblem
from junction.pipeline.backpressure import OutboxPressure
from junction.pipeline.push import PushIngestor
from junction.pipeline.runner import PipelineRunner

_LOCK = threading.Lock()
_INGESTORS = "push_ingestors"
_RUN_LOCKS = "pipeline_locks"
_PRESSURE = "outbox_pressure"


def require_pipeline(ctx: ApiContext, name: str) -> None:
    """404 unless ``name`` is a configured pipeline."""
    if name not in ctx.cfg.pipelines:
        raise ApiProblem(404, "Not found", "no such pipeline", code="pipeline_not_found")


def runner_for(ctx: ApiContext, name: str) -> PipelineRunner:
    """The hub's runner of pipeline ``name`` (built once; blocking on first use)."""
    require_pipeline(ctx, name)
    with _LOCK:
        return ctx.hub.runner(name)


def ingestor_for(ctx: ApiContext, name: str) -> PushIngestor:
    """The push ingestor of pipeline ``name`` (one per pipeline; blocking on first use)."""
    ingestors: dict[str, PushIngestor] = ctx.extras.setdefault(_INGESTORS, {})
    found = ingestors.get(name)
    if found is None:
        runner = runner_for(ctx, name)
        with _LOCK:
            pressure = ctx.extras.get(_PRESSURE)
            if pressure is None:  # one pending count for every pipeline of the process
                pressure = OutboxPressure(ctx.store, ctx.cfg.delivery.max_pending)
                ctx.extras[_PRESSURE] = pressure
            found = ingestors.setdefault(name, PushIngestor(runner, pressure=pressure))
    return found


def run_lock(ctx: ApiContext, name: str) -> threading.Lock:
    """The lock held while the API runs or replays into pipeline ``name``."""
    locks: dict[str, threading.Lock] = ctx.extras.setdefault(_RUN_LOCKS, {})
    with _LOCK:
        return locks.setdefault(name, threading.Lock())
