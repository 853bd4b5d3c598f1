"""Process helpers the benchmarks share: a free loopback port, and pinning to one CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import time


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
