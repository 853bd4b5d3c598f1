"""The CSV file-drop connector.

Each file is one stream.  ``read`` first scans the whole file (SHA-256 plus strict decoding), then
parses it with ``csv.reader`` over a strictly decoding text stream and emits rows as
``dict(zip(header, row))``.  The hot path works a whole batch at a time with C-level
``map``/``zip``; rows that are ragged, hold a NUL or an oversized field drop a batch to the
per-row path, which turns them into ``RowError`` entries and keeps going.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
from collections.abc import Iterable, Iterator
from itertools import chain, islice, repeat
from typing import Any, ClassVar

from connectors.base import RawBatch, RowError
from connectors.csv_file.config import DELIMITER_CANDIDATES, CsvFileConfig
from connectors.files import FileConnectorBase, resume_row
from connectors.text_scan import TextScan, scan_text_file
from junction.core.errors import FieldTooLargeError, ParseError

# an Excel dialect hint on the first line, e.g. ``sep=;``
_SEP_LINE = re.compile(r'"?sep=([^\r\n])"?(?:\r\n|\r|\n|$)', re.IGNORECASE)
_SNIFF_CHARS = 16 * 1024
_BUFFER = 1 << 20
_limit_lock = threading.Lock()
# the csv module's own field limit (characters): it only caps the memory of one field; fields
# over max_field_bytes but under this cap get a clean FieldTooLargeError naming the column
CSV_HARD_LIMIT = 1 << 24


class _CsvFailure:
    """A record the csv module refused; only produced by the careful re-read."""

    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


class _Restart(Exception):
    """The fast loop met a csv error: read again carefully, after the rows already emitted."""


def raise_csv_field_limit(chars: int) -> None:
    """Raise the process-wide ``csv.field_size_limit`` to at least ``chars``, never lower it.

    The limit only caps the memory one field may take; which rows fail is decided per config
    by the connector itself, so other users of the csv module keep working.
    """
    with _limit_lock:
        if csv.field_size_limit() < chars:
            csv.field_size_limit(chars)


def header_names(cells: list[str]) -> list[str]:
    """Turn header cells into unique keys: whitespace collapsed, blanks named ``column_<n>``."""
    names: list[str] = []
    seen: set[str] = set()
    for i, cell in enumerate(cells, 1):
        base = " ".join(cell.split()) or f"column_{i}"
        name, k = base, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def sniff_delimiter(sample: str) -> str:
    """Pick the delimiter of ``sample`` among ``, ; TAB |`` (``,`` when nothing fits)."""
    sample = sample[:_SNIFF_CHARS]
    cut = max(sample.rfind("\n"), sample.rfind("\r"))
    body = sample[: cut + 1] if cut > 0 else sample
    try:
        found = csv.Sniffer().sniff(body, delimiters=DELIMITER_CANDIDATES).delimiter
    except csv.Error:
        found = ""
    if found and found in DELIMITER_CANDIDATES:
        return found
    first = body.splitlines()[0] if body else ""
    best = max(DELIMITER_CANDIDATES, key=first.count)
    return best if first.count(best) else ","


def _careful(reader: Any) -> Iterator[list[str] | _CsvFailure]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _CsvFailure(reader.line_num, str(exc))
            continue
        yield row


def _line_count(row: list[str]) -> int:
    # a record spans one line plus one per line break inside its quoted fields
    return 1 + sum(v.count("\n") + v.count("\r") - v.count("\r\n") for v in row)


class CsvFileConnector(FileConnectorBase):
    """Reads CSV file drops: one stream per ready file, keyed by ``sha256[:16]:row``."""

    name: ClassVar[str] = "csv_file"
    config_model: ClassVar[type[CsvFileConfig]] = CsvFileConfig
    stream_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    config: CsvFileConfig

    def __init__(self, config: CsvFileConfig) -> None:
        super().__init__(config)

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Scan ``stream`` (one file) eagerly, then return its batches after ``cursor``.

        Raises:
            ConfigError: the stream is not a file under the configured path.
            FileTooLargeError: the file exceeds ``max_file_bytes``.
            EncodingError: a byte does not decode strictly; no row has been emitted.
        """
        path = self._resolve_stream(stream)
        cfg = self.config
        scan = scan_text_file(
            path,
            cfg.encoding,
            max_file_bytes=cfg.max_file_bytes,
            max_field_bytes=cfg.max_field_bytes,
        )
        skip = resume_row(cursor, scan.sha256)
        if scan.size <= scan.encoding.bom_len:
            return iter(())
        raise_csv_field_limit(max(4 * cfg.max_field_bytes, CSV_HARD_LIMIT))
        return self._batches(stream, scan, skip)

    def _batches(self, stream: str, scan: TextScan, skip: int) -> Iterator[RawBatch]:
        emitted, careful = skip, False
        while True:
            try:
                for batch in self._parse(stream, scan, emitted, careful):
                    emitted = batch.cursor["row"]
                    yield batch
                return
            except _Restart:
                careful = True

    def _parse(self, stream: str, scan: TextScan, skip: int, careful: bool) -> Iterator[RawBatch]:
        cfg = self.config
        enc = scan.encoding
        sample = codecs.getincrementaldecoder(enc.codec)().decode(
            scan.head[enc.bom_len :], final=scan.size <= len(scan.head)
        )
        sep = _SEP_LINE.match(sample)
        delimiter = cfg.delimiter
        if delimiter == "auto":
            delimiter = sep.group(1) if sep else sniff_delimiter(sample)
        with open(scan.path, "rb", buffering=_BUFFER) as raw:
            raw.seek(enc.bom_len)
            text = io.TextIOWrapper(raw, encoding=enc.codec, errors="strict", newline="")
            offset = 0
            if sep:
                text.readline()
                offset = 1
            reader = csv.reader(text, delimiter=delimiter, quotechar=cfg.quotechar, strict=False)
            src: Iterator[Any] = _careful(reader) if careful else reader
            try:
                for _ in range(cfg.skip_rows):
                    next(src, None)
                mark, first = reader.line_num, next(src, None)
                while first == []:  # blank lines before the header
                    mark, first = reader.line_num, next(src, None)
            except csv.Error:
                raise _Restart from None
            if first is None:
                return
            if isinstance(first, _CsvFailure):
                raise ParseError(
                    "the first record cannot be parsed",
                    details=first.message,
                    context={"file": scan.path, "line": offset + first.line},
                )
            if cfg.has_header:
                header, mark = header_names(first), reader.line_num
            else:
                header = [f"column_{i}" for i in range(1, len(first) + 1)]
                src = chain([first], src)
            prov = {
                "connector": self.name,
                "file": scan.path,
                "sha256": scan.sha256,
                "encoding": enc.name,
                "delimiter": delimiter,
            }
            rows_iter = _Rows(self, scan, header, delimiter, skip, careful)
            for records, keys, positions, errors, last in rows_iter.run(src, reader, mark, offset):
                yield RawBatch(
                    stream=stream,
                    records=records,
                    keys=keys,
                    positions=positions,
                    cursor={"sha256": scan.sha256, "row": last},
                    errors=errors,
                    provenance=dict(prov),
                )


_Chunk = tuple[list[dict[str, Any]], list[str], list[int], list[RowError], int]


class _Rows:
    """Turns csv rows into batches; state for one pass over one file."""

    def __init__(
        self,
        conn: CsvFileConnector,
        scan: TextScan,
        header: list[str],
        delimiter: str,
        skip: int,
        careful: bool,
    ) -> None:
        cfg = conn.config
        self.path = scan.path
        self.header = header
        self.width = len(header)
        self.delimiter = delimiter
        self.quotechar = cfg.quotechar
        self.skip = skip
        self.careful = careful
        self.check_nul = scan.has_nul
        self.short_lines = scan.short_lines
        self.batch_size = cfg.batch_size
        self.max_bytes = cfg.max_field_bytes
        # a field of at most max_bytes // 4 characters cannot exceed max_bytes in UTF-8
        self.quick_chars = cfg.max_field_bytes // 4
        self.prefix = f"{scan.sha256[:16]}:"

    def run(self, src: Iterator[Any], reader: Any, mark: int, offset: int) -> Iterator[_Chunk]:
        """Yield ``(records, keys, positions, errors, last row)`` per batch worth of rows."""
        header, width, prefix, skip = self.header, {self.width}, self.prefix, self.skip
        quick, n = self.quick_chars, 0
        while True:
            try:
                rows = list(islice(src, self.batch_size))
            except csv.Error:
                raise _Restart from None
            if not rows:
                return
            now = reader.line_num
            single = now - mark == len(rows)  # no record spans several lines
            if (
                self.careful
                or self.check_nul
                or set(map(len, rows)) != width
                or (not (single and self.short_lines) and max(map(len, map("".join, rows))) > quick)
            ):
                chunk = self._slow(rows, n, mark, offset, single)
            else:
                end = n + len(rows)
                if end <= skip:
                    n, mark = end, now
                    continue
                first = n + 1
                if first <= skip:
                    rows, first = rows[skip - n :], skip + 1
                records = list(map(dict, map(zip, repeat(header), rows)))
                positions = list(range(first, end + 1))
                chunk = (records, [f"{prefix}{i}" for i in positions], positions, [], end)
            n, mark = chunk[4], now
            if chunk[0] or chunk[3]:
                yield chunk

    def _slow(self, rows: list[Any], n: int, mark: int, offset: int, single: bool) -> _Chunk:
        records: list[dict[str, Any]] = []
        keys: list[str] = []
        positions: list[int] = []
        errors: list[RowError] = []
        line = offset + mark  # physical line before the record, counting a ``sep=`` line
        for row in rows:
            start = line + 1
            if isinstance(row, _CsvFailure):
                line = start = offset + row.line
            else:
                line += 1 if single else _line_count(row)
                if not row:
                    continue  # blank lines carry no row number
            n += 1
            if n <= self.skip:
                continue
            error = self._problem(row, n, start)
            if error is None:
                records.append(dict(zip(self.header, row, strict=True)))
                keys.append(f"{self.prefix}{n}")
                positions.append(n)
            else:
                raw = b"" if isinstance(row, _CsvFailure) else self._raw(row)
                errors.append(RowError(f"{self.prefix}{n}", n, raw, error))
        return records, keys, positions, errors, n

    def _problem(self, row: list[str] | _CsvFailure, n: int, line: int) -> Exception | None:
        ctx: dict[str, Any] = {"file": self.path, "row": n, "line": line}
        if isinstance(row, _CsvFailure):
            if "field larger than field limit" in row.message:
                return FieldTooLargeError(
                    f"row {n} has a field larger than max_field_bytes", context=ctx
                )
            return ParseError(f"row {n} cannot be parsed", details=row.message, context=ctx)
        if len(row) != self.width:
            ctx.update(expected=self.width, got=len(row))
            return ParseError(f"row {n} has {len(row)} fields, expected {self.width}", context=ctx)
        if self.check_nul and any("\x00" in v for v in row):
            return ParseError(f"row {n} contains a NUL character", context=ctx)
        if max(map(len, row), default=0) > self.quick_chars:
            for name, value in zip(self.header, row, strict=True):
                size = len(value.encode("utf-8")) if len(value) > self.quick_chars else 0
                if size > self.max_bytes:
                    ctx.update(bytes=size, limit=self.max_bytes)
                    return FieldTooLargeError(
                        f"a field of row {n} is larger than max_field_bytes",
                        field=name,
                        context=ctx,
                    )
        return None

    def _raw(self, row: Iterable[str]) -> bytes:
        buf = io.StringIO()
        # a CRLF terminator makes QUOTE_MINIMAL quote values holding CR or LF; it is cut off
        csv.writer(
            buf, delimiter=self.delimiter, quotechar=self.quotechar, lineterminator="\r\n"
        ).writerow(row)
        return buf.getvalue()[:-2].encode("utf-8")
