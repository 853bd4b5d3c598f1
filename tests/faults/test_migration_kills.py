"""Issue 11 fault suite: SIGKILL a process while it creates the store's schema.

A hub's first start on an empty SQLite file migrates it.  Killed at a random point of that
(across many seeds), the next start must find either no schema or a whole one, never half of one
(the fault suite found this: Python's sqlite3 driver committed each CREATE TABLE on its own).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from junction.store.engine import make_engine, migrate
from junction.store.repo import Store
from junction.store.tables import metadata
from tests.faults.support import SEEDS, fork

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


def _migrate_in_child(url: str) -> int:
    pid = fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
        except BaseException:  # the exit code is the report
            code = 3
        os._exit(code)
    return pid


def _span(tmp_path: Path) -> float:
    """How long a child takes to migrate a new file (the median of three).

    The parent migrates a scratch file first, so its children start with Alembic and the
    migration scripts already imported, as every child after the first seed does (the test's
    ``Store.open`` imports them): a probe that imported them itself took ~3x as long, and most
    kills then landed after the migration had finished.
    """
    engine = make_engine(f"sqlite:///{tmp_path / 'warm.db'}")
    migrate(engine)
    engine.dispose()
    spans = []
    for i in range(3):
        pid = _migrate_in_child(f"sqlite:///{tmp_path / f'probe{i}.db'}")
        started = time.monotonic()  # as the seeds' clock: from the fork's return
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        spans.append(time.monotonic() - started)
    return statistics.median(spans)


def test_sigkill_during_migration_leaves_no_half_schema(tmp_path: Path) -> None:
    span = _span(tmp_path)
    landed = 0
    for seed in range(SEEDS):
        rng = random.Random(seed)
        url = f"sqlite:///{tmp_path / f's{seed}.db'}"
        pid = _migrate_in_child(url)
        time.sleep(rng.uniform(0.0, span))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        landed += os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        store = Store.open(url)  # the next start migrates what is left
        try:
            tables = set(inspect(store.engine).get_table_names())
        finally:
            store.close()
        assert set(metadata.tables) <= tables, f"seed {seed}: tables missing after the restart"
    assert landed >= SEEDS // 2, f"only {landed} kills landed mid-migration"


def test_processes_starting_together_on_a_new_file_all_migrate(tmp_path: Path) -> None:
    """Four processes open one new SQLite file at once: one migrates, the others wait for its
    write lock and find the schema current (they used to fail "could not be migrated")."""
    for round_ in range(5):
        url = f"sqlite:///{tmp_path / f'together{round_}.db'}"
        pids = [_migrate_in_child(url) for _ in range(4)]
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        assert codes == [0, 0, 0, 0], f"round {round_}: exit codes {codes}"
