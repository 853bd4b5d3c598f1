"""Fault-suite helpers: seeded runs of the hub in forked children, killed at random points.

A child is forked from the test process (the pipeline code is already imported, the session's
model already trained), so a seed costs a fraction of a second instead of an interpreter start:
that is what lets every fault kind run across 50+ seeds in CI's budget.  The child runs
``junction run --once`` in-process (every pipeline once, then the outbox) and ``_exit``s.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from junction.pipeline.hub import Hub
from junction.store.reconcile import Reconciliation, reconcile
from junction.store.repo import Store

SEEDS = int(os.environ.get("JUNCTION_FAULT_SEEDS", "50"))
# seeds of the kinds that mostly wait (timeouts, retries, restarts) run in this many processes
PROCS = max(1, int(os.environ.get("JUNCTION_FAULT_PROCS", "3")))
T = TypeVar("T")


def fork() -> int:
    """``os.fork()`` with the test process's objects frozen: the copy never collects them.

    Garbage of earlier tests (a Kafka client in a reference cycle) must not be freed in the
    forked copy: there its librdkafka threads do not exist, and freeing it crashed a seed's
    process (SIGSEGV in the collector).  Frozen, it stays out of the copy's collections; the
    parent unfreezes at once and frees it later itself.  Freezing takes no time, so the fork
    costs what it did (kill points are timed from it): no collection here.
    """
    gc.freeze()
    pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    return pid


def run_in_child(cfg: Path, drain_wait_s: float = 0.5) -> int:
    """Fork a child that runs the hub once and delivers; return its pid."""
    pid = fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            hub = Hub.from_file(cfg)
            try:
                hub.run_once()
                hub.deliver(drain_wait_s=drain_wait_s)
            finally:
                hub.close()
        except BaseException:
            code = 3
            # the parent names what failed: the traceback beside the config
            (cfg.parent / "child-error.txt").write_text(traceback.format_exc())
        os._exit(code)
    return pid


def wait_child(pid: int, timeout_s: float = 120.0) -> int:
    """Wait for a child; return its exit code (negative: killed by that signal)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise TimeoutError(f"child {pid} did not finish in {timeout_s:.0f}s")


def kill_at_random_point(cfg: Path, rng: random.Random, span_s: float) -> tuple[float, int]:
    """Run the hub in a child and SIGKILL it after a random part of ``span_s``.

    Returns (when it was killed, its exit code: -9 when the kill landed, 0 if it finished).
    """
    at = rng.uniform(0.0, span_s)
    pid = run_in_child(cfg)
    deadline = time.monotonic() + at
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return at, os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return at, os.waitstatus_to_exitcode(status)


def timed_run(cfg: Path) -> float:
    """Run the hub once to the end in a child; return how long it took."""
    pid = run_in_child(cfg)
    started = time.monotonic()  # as kill_at_random_point's clock: from the fork's return
    code = wait_child(pid)
    assert code == 0, f"an undisturbed run failed ({code})"
    return time.monotonic() - started


def reconciled(store_url: str, pipeline: str = "leads") -> Reconciliation:
    """The reconciliation of ``pipeline`` in the store at ``store_url``."""
    store = Store.open(store_url)
    try:
        return reconcile(store, pipeline, scored=True)
    finally:
        store.close()


@dataclass
class SeedOutcome:
    """What one seed did, for the failure message."""

    seed: int
    killed_at: float
    exit_code: int
    problem: str | None = None


def run_seeds(seeds: int, one: Callable[[int], SeedOutcome]) -> list[SeedOutcome]:
    """Run ``one(seed)`` for every seed; the caller asserts on the outcomes."""
    return [one(seed) for seed in range(seeds)]


def map_seeds(
    fn: Callable[..., T], calls: Sequence[tuple[Any, ...]], procs: int | None = None
) -> list[T]:
    """``fn(*args)`` for every args in ``calls``, in ``procs`` forked processes, in order.

    ``procs`` defaults to ``PROCS``; kinds whose seeds mostly wait (joins, session timeouts)
    ask for more.  ``JUNCTION_FAULT_PROCS=1`` runs every kind in the test process.  Each
    process runs its seeds one after the other (and may fork its own children: it is a
    single-threaded copy of the test process).  ``fn`` must be a module-level function.
    """
    procs = 1 if PROCS == 1 else (procs or PROCS)
    if procs == 1 or len(calls) <= 1:
        return [fn(*args) for args in calls]
    # garbage freed here, once, not in a copy; the rest frozen (see fork)
    gc.collect()
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            return pool.starmap(fn, calls, chunksize=1)
    finally:
        gc.unfreeze()


def start_typed_child(cfg: Path, drain_wait_s: float = 0.5) -> tuple[int, int]:
    """Fork a child that runs the hub once and delivers; return (pid, read end of its report).

    The child exits 0 when it finished, 3 when it failed with a typed ``JunctionError`` and 4
    with anything else; it writes the error's class and safe message to the pipe.
    """
    from junction.core.errors import JunctionError

    read, write = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        code, what = 0, ""
        try:
            hub = Hub.from_file(cfg)
            try:
                hub.run_once()
                hub.deliver(drain_wait_s=drain_wait_s)
            finally:
                hub.close()
        except JunctionError as exc:
            code, what = 3, f"{type(exc).__name__}: {exc.user_message}"
        except BaseException as exc:
            code, what = 4, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
        os.write(write, what.encode()[:4000])
        os._exit(code)
    os.close(write)
    return pid, read


def finish_typed_child(pid: int, read: int, timeout_s: float = 120.0) -> tuple[int, str]:
    """Wait for a ``start_typed_child`` child; return (exit code, its report)."""
    code = wait_child(pid, timeout_s)
    with os.fdopen(read, "rb") as pipe:
        return code, pipe.read().decode(errors="replace")
