"""Background WAL checkpoints for a SQLite file store.

A commit that finds the WAL over ``wal_autocheckpoint`` pages copies it into the database and
syncs both before it returns: measured here, 200-350 ms of blocked I/O every dozen batches, in
the middle of a writer's loop.  A writer that commits batches asks this class instead, every
``every`` committed batches, for a ``PASSIVE`` checkpoint on a background thread with its own
connection: it waits for no reader or writer and releases the GIL while it copies and syncs, so
the WAL stays below the commit's own threshold.  What a commit makes durable is unchanged
(``synchronous=NORMAL``).
"""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy.engine import make_url


def sqlite_file_of(store_url: str) -> str | None:
    """The database file of a SQLite file store, else None (PostgreSQL, memory, URI)."""
    url = make_url(store_url)
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or "?" in db:
        return None
    return db


class BackgroundCheckpoints:
    """Checkpoints one SQLite file's WAL on a thread, every ``every`` committed batches."""

    def __init__(self, db: str, every: int) -> None:
        """``db`` is the database file; nothing runs until ``committed`` asks."""
        self.db = db
        self.every = every
        self._since = 0  # batches committed since the last checkpoint was asked for
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        """Count a committed batch; every ``every``, checkpoint in background."""
        self._since += 1
        if self._since < self.every or not self._idle.is_set():
            return  # a checkpoint still running covers these too
        self._since = 0
        self._idle.clear()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._checkpoints, name="junction-wal-checkpoint", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no background checkpoint runs; return whether none does."""
        return self._idle.wait(timeout)

    def _checkpoints(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.db, timeout=0, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or failing: the next one, or a commit's own, checkpoints
                finally:
                    self._idle.set()
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """End the checkpoint thread (after the checkpoint it runs, if any)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
