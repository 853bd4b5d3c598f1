"""Fixtures of the fault suite: private PostgreSQL servers it may restart at will."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.private_pg import PrivatePg, pg_bin, start_servers
from tests.faults.support import PROCS


@pytest.fixture(scope="session")
def private_pgs() -> Iterator[list[PrivatePg]]:
    """``PROCS`` private servers (one per seed process), never the machine's shared one."""
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    # pytest's temp folders are root-only; the server's user needs a folder of its own
    root = Path(tempfile.mkdtemp(prefix="junction-faults-pg-"))
    os.chmod(root, 0o755)
    try:
        servers = start_servers(root, PROCS)
        try:
            yield servers
        finally:
            for server in servers:
                server.stop_quietly()
    finally:
        shutil.rmtree(root, ignore_errors=True)
