"""The webhook sink's durable record: one JSON line per accepted delivery, fsync'ed before the 2xx.

Lines look like ``{"webhook_id": ..., "received_at": ..., "body": ...}``.  Concurrent requests share
one fsync (group commit): while one write+fsync runs in a worker thread, new lines queue up and go
out together in the next one, so durability costs one fsync per batch, not per request.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson

from junction.core.errors import ParseError


def read_sink_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every delivery a sink accepted, in arrival order.

    A torn last line (the sink died mid-write, before it answered) is skipped: that delivery was
    never acknowledged, so its sender will retry it.

    Args:
        path: The sink's JSONL file.

    Returns:
        One dict per accepted delivery; an empty list when the file does not exist.

    Raises:
        ParseError: A complete line is not a JSON object (the file was edited or corrupted).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    # the part after the last newline is empty, or a torn write
    complete = lines[:-1]
    out: list[dict[str, Any]] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "webhook_id" not in record:
            raise ParseError("sink file has a malformed line", context={"line": number})
        out.append(record)
    return out


class Journal:
    """An append-only JSONL file with group-committed fsyncs.

    Args:
        path: The file; created (mode 0600, payloads may hold personal data) when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def open(self) -> set[str]:
        """Open the file for appending and return the webhook ids it already holds.

        A torn last line is cut off first, so the next append starts on a clean line.
        """
        seen = {str(r["webhook_id"]) for r in read_sink_file(self.path)}
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(fd).st_size
        if size:
            with self.path.open("rb") as fh:
                data = fh.read()
            good = data.rfind(b"\n") + 1
            if good != size:
                os.ftruncate(fd, good)
                os.fsync(fd)
        self._fd = fd
        return seen

    def append(self, line: bytes) -> asyncio.Future[None]:
        """Queue one line (ending in a newline); the future resolves once it is on disk.

        Must be called from the event loop that awaits the future.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((line, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_all())
        return fut

    async def _flush_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                data = b"".join(line for line, _ in batch)
                try:
                    await loop.run_in_executor(None, self._write_sync, data)
                except OSError as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._flusher = None

    def _write_sync(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError("journal is closed")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    async def drain(self) -> None:
        """Wait until every queued line is on disk (or failed)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
