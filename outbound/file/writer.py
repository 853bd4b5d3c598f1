"""The disk side of the file channel: one append-only file, its header, its ids, fsync.

Blocking; the channel calls it from a worker thread, one batch at a time per file.  A batch is
written with ``os.write`` and made durable with ``os.fsync`` (and the folder's entry fsynced when
the file is new) before any of its deliveries count as sent.

When an existing file is opened it is read once, streaming: its CSV header (so a restarted hub
keeps the day's columns) and, with ``skip_duplicates``, the delivery ids already in it.  A crash
can leave the last batch half written; that tail (after the last complete row) is cut off, since
none of its deliveries were acknowledged and they will be sent again.  For CSV a row is complete
at a line end where the double quotes so far balance (every cell is quoted and quotes inside are
doubled, so a newline inside a cell never ends a row).
"""

from __future__ import annotations

import contextlib
import csv
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from outbound.file.cells import ID_COLUMN, uncell

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


@dataclass
class FileState:
    """One open export file."""

    path: Path
    fd: int = -1
    regular: bool = True
    new: bool = True  # empty so far: the CSV header still has to be written
    columns: list[str] | None = None  # the CSV header, once known
    ids: set[str] | None = None  # delivery ids in the file (with skip_duplicates)


def complete_end(chunks: Iterable[bytes], csv_format: bool) -> int:
    """Return the byte offset just after the last complete row of the content in ``chunks``."""
    end = 0
    odd = False  # inside a quoted CSV cell
    offset = 0
    for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if csv_format:
                    odd ^= chunk.count(b'"', start) % 2 == 1
                break
            if csv_format:
                odd ^= chunk.count(b'"', start, nl) % 2 == 1
            start = nl + 1
            if not odd:
                end = offset + start
        offset += len(chunk)
    return end


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def open_file(path: Path, *, csv_format: bool, want_ids: bool) -> FileState:
    """Open (creating when missing) ``path`` for appending, and read what it already holds.

    Raises:
        OSError: The folder cannot be made, or the file cannot be opened, read or repaired.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _OPEN_FLAGS, 0o640)
    state = FileState(path=path, fd=fd, ids=set() if want_ids else None)
    try:
        info = os.fstat(fd)
        state.regular = stat.S_ISREG(info.st_mode)
        if not state.regular or info.st_size == 0:
            # a device or a pipe is written, never read back (nothing to read)
            state.new = state.regular
            return state
        state.new = False
        with open(path, "rb") as reader:
            end = complete_end(_chunks(reader), csv_format)
        if end < info.st_size:
            # the unacknowledged tail of a batch cut short by a crash
            os.ftruncate(fd, end)
            os.fsync(fd)
        if end == 0:
            state.new = True
            return state
        if csv_format:
            _read_csv(path, state)
        elif state.ids is not None:
            _read_jsonl(path, state.ids)
    except BaseException:
        os.close(fd)
        raise
    return state


def _read_csv(path: Path, state: FileState) -> None:
    with path.open(newline="", encoding="utf-8", errors="replace") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        state.columns = [uncell(name) for name in header] if header else None
        if state.ids is None or not state.columns or ID_COLUMN not in state.columns:
            return
        at = state.columns.index(ID_COLUMN)
        for row in reader:
            if len(row) > at:
                state.ids.add(uncell(row[at]))


def _read_jsonl(path: Path, ids: set[str]) -> None:
    with path.open("rb") as lines:
        for line in lines:
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get(ID_COLUMN), str):
                ids.add(row[ID_COLUMN])


def append(state: FileState, data: bytes) -> None:
    """Write ``data`` at the end of the file and fsync it (and the folder, for a new file).

    A write that fails part way (a full disk takes what fits, then refuses the rest) is cut
    back off at once, so nobody reading the file sees half a batch; the repair at the next open
    only has to handle a crash.

    Raises:
        OSError: The write or the fsync failed (disk full, I/O error, ...).
    """
    view = memoryview(data)
    start = os.lseek(state.fd, 0, os.SEEK_END) if state.regular else -1
    try:
        while view:
            written = os.write(state.fd, view)
            view = view[written:]
        if state.regular:
            os.fsync(state.fd)
    except OSError:
        if start >= 0:
            # shrinking needs no space; if even that fails, the next open repairs the tail
            with contextlib.suppress(OSError):
                os.ftruncate(state.fd, start)
                os.fsync(state.fd)
        raise
    if state.new and state.regular:
        _fsync_folder(state.path.parent)
    state.new = False


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close(state: FileState) -> None:
    """Close the file (safe to call twice)."""
    fd, state.fd = state.fd, -1
    if fd >= 0:
        os.close(fd)
