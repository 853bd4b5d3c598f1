"""Private PostgreSQL servers for the fault suite, so restarting one disturbs nobody else.

The machine's shared server (the one ``tests/conftest.py`` uses) is never touched: these run from
the installed binaries (``/usr/lib/postgresql/<version>/bin``) in a temporary folder, on free
loopback ports, with their sockets in that folder.  PostgreSQL refuses to run as root, so when the
tests run as root the server commands run as the ``postgres`` user (``runuser``) in folders it
owns.  ``fsync`` is off: an immediate shutdown crashes the server, not the machine, so the OS
still holds every write.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and runuser is missing: cannot start PostgreSQL")
    return [runuser, "-u", "postgres", "--"]


def _owner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[-1]).name}: {argv} failed: {done.stderr[-1000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PrivatePg:
    """One private server: its data folder, port and the commands to stop and start it."""

    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        _run([*_as_server_user(), str(self.bin / "pg_ctl"), "-D", str(self.data), *args])

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=50 -c shared_buffers=16MB"
        )
        self._ctl("-o", opts, "-l", str(self.data.parent / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop: ``fast`` (clients disconnected, clean checkpoint) or ``immediate`` (a crash:
        recovery replays the WAL at the next start)."""
        self._ctl("-m", mode, "-w", "stop")

    def stop_quietly(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")


def start_servers(root: Path, count: int) -> list[PrivatePg]:
    """initdb once into ``root``, copy it ``count`` times, start each copy; return them.

    ``root`` must be reachable by the server's user (pytest's root-only temp folders are not).
    """
    bin_ = pg_bin()
    if bin_ is None:
        raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    seed_dir = root / "initdb"
    seed_dir.mkdir()
    _owner(seed_dir)
    initdb = [str(bin_ / "initdb"), "-D", str(seed_dir / "data"), "-A", "trust", "-U", "postgres"]
    _run([*_as_server_user(), *initdb, "-E", "UTF8", "--no-sync"])
    servers: list[PrivatePg] = []
    for k in range(count):
        home = root / f"pg{k}"
        home.mkdir()
        _owner(home)
        _run([*_as_server_user(), "cp", "-a", str(seed_dir / "data"), str(home / "data")])
        server = PrivatePg(bin_, home / "data", _free_port())
        try:
            server.start()
        except BaseException:
            for s in servers:
                s.stop_quietly()
            raise
        servers.append(server)
    return servers
