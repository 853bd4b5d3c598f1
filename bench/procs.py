"""Process helpers the benchmarks share: a free loopback port, pinning to one CPU, byte-code
compiled before any clock starts, and a fresh PostgreSQL schema per run."""

from __future__ import annotations

import compileall
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Junction's own packages (an editable install: pip compiled its dependencies, not these)
PACKAGES = ("junction", "connectors", "mappings", "scoring", "outbound", "schemas", "bench")


@contextmanager
def fresh_schema(url: str, name: str) -> Iterator[str]:
    """A PostgreSQL URL whose search path is a schema ``name`` created now and dropped
    afterwards, so a run never sees an earlier one's rows (files it already took, due rows);
    other URLs pass through."""
    if not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def work_folder(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A fresh temporary folder for one bench run: removed after it, or kept and named."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_self(cpu: int) -> None:
    """Pin this process to the ``cpu``-th allowed CPU (modulo their count); no-op if unsupported."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Wait (at most 60 s) until ``proc`` accepts connections on 127.0.0.1:``port``.

    Raises:
        RuntimeError: ``proc`` exited, or never listened (it is killed then).
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {what} did not start")


def precompile() -> None:
    """Write the byte-code of Junction's packages, as a regular (non-editable) install does.

    The processes a benchmark spawns (stage workers, ``junction serve``, share workers) import
    about 160 of Junction's modules.  Where no ``.pyc`` exists, and none is written while
    ``PYTHONDONTWRITEBYTECODE`` is set (this machine sets it), every process compiles them
    from source again: ~1.4 s of CPU per start that a deployed hub never pays.  Runs before
    any clock; stale files are simply recompiled.
    """
    for name in PACKAGES:
        compileall.compile_dir(ROOT / name, quiet=2)
