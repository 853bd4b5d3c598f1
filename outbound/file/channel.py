"""The file channel: deliveries appended as CSV or JSONL rows to daily files in a folder.

Each delivery becomes one row (a digest one row per item), all carrying the delivery id, so a
delivery written again after a crash (the row reached the disk, the worker died before recording
it) is visible as a repeated id; with ``skip_duplicates`` the channel itself skips it.  Rows for
one file queue behind a single writer task: whatever arrives while a batch is being written goes
in the next one (group commit), each batch is written and fsynced in a worker thread, and a
delivery counts as sent only once its batch is on disk.

Failures: a disk that is full, a folder that cannot be written, any I/O error → UnavailableError
(retried; the message names the file, never record data); an event the columns cannot be read
from → RecordError; a file whose header disagrees with the configured columns → ConfigError.
One hub process should write a folder: the header, the id index and the repair of a torn last
batch assume a single writer.
"""

from __future__ import annotations

import asyncio
import errno
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import orjson

from junction.core.errors import (
    ConfigError,
    InternalError,
    JunctionError,
    RecordError,
    UnavailableError,
)
from outbound.base import Delivery, Receipt
from outbound.config_errors import validate_config
from outbound.file import writer
from outbound.file.cells import (
    EXTRA_COLUMN,
    FIXED_COLUMNS,
    Columns,
    csv_lines,
    default_row,
)
from outbound.file.config import FileConfig
from outbound.lifecycle import ClosesOnExit
from outbound.templates import event_context

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
NO_PIPELINE = "_hub"


# what one delivery of a batch came to: (rows written, was a duplicate), or its error
_Outcome: TypeAlias = tuple[int, bool] | JunctionError


@dataclass
class _Item:
    delivery_id: str
    rows: list[dict[str, Any]]
    done: asyncio.Future[tuple[int, bool]]


@dataclass
class _Slot:
    path: Path
    date: str
    state: writer.FileState | None = None
    pending: list[_Item] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return not self.pending and (self.task is None or self.task.done())


def _io_error(path: Path, exc: OSError) -> UnavailableError:
    code = errno.errorcode.get(exc.errno or 0, "EIO")
    reason = exc.strerror or type(exc).__name__
    return UnavailableError(
        f"could not write the export file {path}: {reason} ({code}); will retry",
        details=type(exc).__name__,
        context={"path": str(path), "errno": code},
    )


class FileChannel(ClosesOnExit):
    """Append deliveries to CSV or JSONL export files.

    Args:
        config: The channel config, or a mapping validated into one.
        clock: Returns the Unix time that picks the day's file (tests inject one).

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
    """

    name: ClassVar[str] = "file"
    config_model: ClassVar[type[FileConfig]] = FileConfig

    def __init__(
        self, config: FileConfig | Mapping[str, Any], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config = validate_config(FileConfig, config, kind="file")
        self._clock = clock
        self._csv = config.format == "csv"
        self._template = config.path_template()
        self._columns = Columns(config.fields) if config.fields is not None else None
        self._slots: dict[Path, _Slot] = {}

    def __repr__(self) -> str:
        return f"FileChannel({self.config.format} in {self.config.folder})"

    def rows(self, delivery_id: str, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows one delivery's event writes: one, or one per item of a digest.

        Raises:
            RecordError: A column's JMESPath fails on this event.
        """
        items = event.get("items")
        contexts = (
            [i for i in items if isinstance(i, Mapping)]
            if event.get("type") == "digest" and isinstance(items, list)
            else [event]
        )
        if self._columns is not None:
            return [self._columns.row(delivery_id, c) for c in contexts]
        return [default_row(delivery_id, c) for c in contexts]

    def path_for(self, event: Mapping[str, Any], date: str) -> Path:
        """The file a delivery's event goes to on ``date`` (YYYY-MM-DD).

        Raises:
            RecordError: The path needs a pipeline name the event lacks or cannot be a file name.
        """
        pipeline = ""
        if "{pipeline}" in self._template:
            name = event.get("pipeline")
            items = event.get("items")
            if name is None and isinstance(items, list) and items and isinstance(items[0], dict):
                name = items[0].get("pipeline")
            if name is None:
                name = NO_PIPELINE  # the hub's own events (alerts) come from no pipeline
            if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
                raise RecordError("the event's pipeline name cannot be used in a file name")
            pipeline = name
        return self.config.folder / self._template.format(date=date, pipeline=pipeline)

    async def send(self, delivery: Delivery) -> Receipt:
        """Append one delivery's rows and return once they are fsynced.

        Returns:
            A Receipt whose ``detail`` holds ``path``, ``rows`` (written) and ``duplicate``
            (True when ``skip_duplicates`` found the id already in the file).

        Raises:
            RecordError: The event cannot fill the columns (or name the file).
            ConfigError: The day's file has other columns than configured.
            UnavailableError: The file cannot be written (disk full, permissions, I/O error).
        """
        started = time.perf_counter()
        event = event_context(delivery.payload)
        rows = self.rows(delivery.delivery_id, event)
        date = datetime.fromtimestamp(self._clock(), UTC).date().isoformat()
        path = self.path_for(event, date)
        slot = self._slot(path, date)
        done: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        slot.pending.append(_Item(delivery.delivery_id, rows, done))
        if slot.task is None or slot.task.done():
            slot.task = asyncio.create_task(self._flush(slot))
        written, duplicate = await done
        return Receipt(
            delivery_id=delivery.delivery_id,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            detail={"path": str(path), "rows": written, "duplicate": duplicate},
        )

    def _slot(self, path: Path, date: str) -> _Slot:
        slot = self._slots.get(path)
        if slot is None:
            # yesterday's files are done with: close the idle ones (rotation)
            for old in [s for s in self._slots.values() if s.date != date and s.idle]:
                if old.state is not None:
                    writer.close(old.state)
                del self._slots[old.path]
            slot = self._slots[path] = _Slot(path, date)
        return slot

    async def _flush(self, slot: _Slot) -> None:
        # the one writer of this file: takes everything queued, writes it, until the queue is empty
        while slot.pending:
            batch, slot.pending = slot.pending, []
            try:
                results = await asyncio.to_thread(self._write_batch, slot, batch)
            except OSError as exc:
                results = [_io_error(slot.path, exc) for _ in batch]
            except JunctionError as exc:
                results = [type(exc)(exc.user_message, context=exc.context) for _ in batch]
            except Exception as exc:  # noqa: BLE001 - a task boundary: no sender may wait forever
                results = [
                    InternalError(
                        f"the export writer failed ({type(exc).__name__})",
                        context={"path": str(slot.path)},
                    )
                    for _ in batch
                ]
            for item, result in zip(batch, results, strict=True):
                _settle(item.done, result)

    def _write_batch(self, slot: _Slot, batch: list[_Item]) -> list[_Outcome]:
        if slot.state is None:
            slot.state = writer.open_file(
                slot.path, csv_format=self._csv, want_ids=self.config.skip_duplicates
            )
        state = slot.state
        if self._csv and state.columns is not None:
            self._check_columns(state.columns, state.path)
        columns = state.columns
        header = b""
        results: list[_Outcome] = []
        parts: list[bytes] = []
        fresh: set[str] = set()
        known = state.ids
        for item in batch:
            if known is not None and (item.delivery_id in known or item.delivery_id in fresh):
                results.append((0, True))
                continue
            if self._csv and columns is None and item.rows:
                columns = self._new_columns(item.rows[0])
                header = csv_lines([columns])
            try:
                parts.append(self._encode(columns, item.rows))
            except (TypeError, ValueError) as exc:
                # one delivery's odd value must not fail the others in its batch
                results.append(
                    RecordError(
                        f"a value cannot be written as {self.config.format}", details=str(exc)
                    )
                )
                continue
            fresh.add(item.delivery_id)
            results.append((len(item.rows), False))
        data = b"".join(parts)
        if data:
            try:
                writer.append(state, header + data)
            except OSError:
                # what reached the disk is unknown: reopen (and repair the tail) next time
                writer.close(state)
                slot.state = None
                raise
            state.columns = columns
        if known is not None:
            known |= fresh
        return results

    def _encode(self, columns: list[str] | None, rows: list[dict[str, Any]]) -> bytes:
        if not self._csv:
            return b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows)
        if not rows:
            return b""
        assert columns is not None
        if columns[-1] == EXTRA_COLUMN and self._columns is None:
            names = set(columns)
            table = []
            for row in rows:
                extra = {k: v for k, v in row.items() if k not in names}
                table.append([row.get(c) for c in columns[:-1]] + [extra or None])
            return csv_lines(table)
        return csv_lines([row.get(c) for c in columns] for row in rows)

    def _new_columns(self, first: dict[str, Any]) -> list[str]:
        if self._columns is not None:
            return list(self._columns.names)
        record = sorted(k for k in first if k not in FIXED_COLUMNS)
        return [*FIXED_COLUMNS, *record, EXTRA_COLUMN]

    def _check_columns(self, columns: list[str], path: Path) -> None:
        if self._columns is not None:
            ok = columns == self._columns.names
        else:
            fixed = tuple(columns[: len(FIXED_COLUMNS)]) == FIXED_COLUMNS
            ok = fixed and columns[-1:] == [EXTRA_COLUMN]
        if not ok:
            raise ConfigError(
                f"the export file {path} has other columns than the channel is configured "
                "for; move the file away or change the channel's path",
                context={"path": str(path)},
            )

    async def aclose(self) -> None:
        """Finish queued writes and close every file; safe to call twice."""
        tasks = [s.task for s in self._slots.values() if s.task is not None and not s.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            if slot.state is not None:
                writer.close(slot.state)
                slot.state = None


def _settle(done: asyncio.Future[tuple[int, bool]], outcome: _Outcome) -> None:
    if done.done():
        return  # the sender gave up (cancelled); the row is written all the same
    if isinstance(outcome, JunctionError):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
