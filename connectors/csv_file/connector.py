"""The CSV file-drop connector.

Each file is one stream.  Reading first scans the whole file (SHA-256 plus strict decoding) and
finds where the data starts (an Excel ``sep=`` line, skipped rows, blank lines and the header,
read with the csv module).  From there, chunks of whole lines that hold no quote character and
only LF or only CRLF line breaks are split on the delimiter, which is exactly what the csv module
would make of them; any other chunk, and everything after it, goes through ``csv.reader``.  Rows
become ``dict(zip(header, row))`` a whole batch at a time; rows that are ragged, hold a NUL or an
oversized field drop a batch to the per-row path, which turns them into ``RowError`` entries and
keeps going.

For worker processes, :meth:`CsvFileConnector.plan_parts` scans a file once and cuts it into
parts that begin at a record and know the row numbers before them (:mod:`.parts`), and
:meth:`CsvFileConnector.read_part` reads one part with the same keys a whole read gives.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, islice, repeat
from typing import Any, BinaryIO, ClassVar

from connectors.base import RawBatch, RowError
from connectors.csv_file.config import DELIMITER_CANDIDATES, CsvFileConfig
from connectors.csv_file.parts import MIN_PART_BYTES, CsvPart, CsvPlan, RangeReader, plan_cuts
from connectors.csv_file.row_cap import check_row_cap
from connectors.files import FileConnectorBase, resume_row
from connectors.text_scan import TextScan, probe_text_file, scan_text_file
from junction.core.errors import (
    FieldTooLargeError,
    JunctionError,
    ParseError,
    UnavailableError,
)
from junction.core.rows import HeaderRows

# an Excel dialect hint on the first line, e.g. ``sep=;``
_SEP_LINE = re.compile(r'"?sep=([^\r\n])"?(?:\r\n|\r|\n|$)', re.IGNORECASE)
_SNIFF_CHARS = 16 * 1024
_BUFFER = 1 << 20
_SPLIT_CHUNK = 1 << 18
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
            TooManyRowsError: the file holds more than ``max_rows`` records; none is emitted.
            EncodingError: a byte does not decode strictly; no row has been emitted.
        """
        plan = self._plan(stream, parts=1, min_part_bytes=MIN_PART_BYTES)
        return self._read_plan(plan, 0, resume_row(cursor, plan.sha256))

    def plan_parts(
        self,
        stream: str,
        cursor: dict[str, Any] | None,
        parts: int,
        *,
        min_part_bytes: int = MIN_PART_BYTES,
    ) -> CsvPlan:
        """Scan ``stream`` once and cut it into up to ``parts`` ranges for parallel readers.

        Each range starts at a record and knows the row numbers before it, so reading the
        parts with :meth:`read_part` yields exactly the rows and keys :meth:`read` does.  A
        file that cannot be cut exactly (quoted fields, CR-only line breaks, UTF-16...) gets
        one part, the whole file.  ``cursor`` is not needed to plan: each part skips the rows
        the cursor covers.

        Raises:
            ConfigError, FileTooLargeError, TooManyRowsError, EncodingError: as :meth:`read`.
        """
        return self._plan(stream, parts=parts, min_part_bytes=min_part_bytes)

    def read_part(
        self, plan: CsvPlan, part: int, cursor: dict[str, Any] | None
    ) -> Iterator[RawBatch]:
        """Return the batches of part ``part`` of ``plan`` after ``cursor`` (any process).

        Raises:
            ConfigError: the stream is not a file under the configured path.
            UnavailableError: the file changed since it was planned (the next run re-reads it).
        """
        path = self._resolve_stream(plan.stream)
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != (plan.size, plan.mtime_ns):
            raise UnavailableError(
                "the file changed while it was being read; the next run reads it again",
                context={"file": path},
            )
        return self._read_plan(plan, part, resume_row(cursor, plan.sha256))

    def _plan(self, stream: str, *, parts: int, min_part_bytes: int) -> CsvPlan:
        plan = self._make_plan(stream, parts=parts, min_part_bytes=min_part_bytes)
        check_row_cap(plan, self.config.max_rows, lambda part: self._read_plan(plan, part, 0))
        return plan

    def _make_plan(self, stream: str, *, parts: int, min_part_bytes: int) -> CsvPlan:
        path = self._resolve_stream(stream)
        cfg = self.config
        probe = probe_text_file(path, cfg.encoding, max_file_bytes=cfg.max_file_bytes)
        # the scan (SHA-256 + strict decoding) and the cutting (line counts) each read the
        # whole file; the cutting needs only the encoding the head names, so it runs beside
        # the scan and is kept when the scan settles on that same encoding and size
        with ThreadPoolExecutor(1, thread_name_prefix="junction-csv-scan") as pool:
            scanning = pool.submit(
                scan_text_file,
                path,
                cfg.encoding,
                max_file_bytes=cfg.max_file_bytes,
                max_field_bytes=cfg.max_field_bytes,
                probe=probe,
            )
            early = self._early_cut(probe, parts, min_part_bytes)
            scan = scanning.result()
        st = os.stat(path)
        whole = CsvPlan(stream, scan, st.st_size, st.st_mtime_ns, "", (), ())
        if scan.size <= scan.encoding.bom_len:
            return whole
        cut: _Cut | None
        if early is not None and (probe.encoding, probe.size) == (scan.encoding, scan.size):
            [cut] = early  # a file the head shows cannot be cut (None) is not tried again
        else:
            cut = self._cut(scan, parts, min_part_bytes)
        if cut is None:
            return whole
        delimiter, header, ranges = cut
        return CsvPlan(stream, scan, st.st_size, st.st_mtime_ns, delimiter, tuple(header), ranges)

    def _cut(self, scan: TextScan, parts: int, min_part_bytes: int) -> _Cut | None:
        """The file's dialect, header and parts; None when only a whole read can tell."""
        cfg = self.config
        raise_csv_field_limit(max(4 * cfg.max_field_bytes, CSV_HARD_LIMIT))
        try:
            head = self._preamble_of(scan)
        except (_Restart, ParseError):
            return None  # the csv read of the whole file reports it
        if head is None:
            return None
        delimiter, header, lines = head
        ranges = plan_cuts(
            scan.path,
            scan,
            lines_before_data=lines,
            quote=cfg.quotechar,
            parts=parts,
            min_part_bytes=min_part_bytes,
        )
        return delimiter, header, ranges

    def _early_cut(
        self, probe: TextScan, parts: int, min_part_bytes: int
    ) -> tuple[_Cut | None] | None:
        """``(cut,)`` made from the head alone, while the scan runs; None when it cannot be made.

        Whatever stops it (a byte that does not decode past the head, a header the csv module
        refuses) the scan meets and reports itself, or the cut is made again after the scan.
        """
        if probe.size <= probe.encoding.bom_len:
            return None
        try:
            return (self._cut(probe, parts, min_part_bytes),)
        except (JunctionError, OSError, ValueError, csv.Error):
            return None

    def _read_plan(self, plan: CsvPlan, part: int, skip: int) -> Iterator[RawBatch]:
        scan = plan.scan
        if scan.size <= scan.encoding.bom_len:
            return iter(())
        raise_csv_field_limit(max(4 * self.config.max_field_bytes, CSV_HARD_LIMIT))
        if not plan.ranges:
            return self._batches(lambda skip_, careful: self._parse(plan, skip_, careful), skip)
        rng = plan.ranges[part]
        if part + 1 < len(plan.ranges) and plan.ranges[part + 1].rows_before <= skip:
            return iter(())  # every row of this part is behind the cursor
        return self._batches(
            lambda skip_, careful: self._parse_part(plan, rng, skip_, careful), skip
        )

    def _batches(
        self, parse: Callable[[int, bool], Iterator[RawBatch]], skip: int
    ) -> Iterator[RawBatch]:
        emitted, careful = skip, False
        while True:
            try:
                for batch in parse(emitted, careful):
                    emitted = batch.cursor["row"]
                    yield batch
                return
            except _Restart:
                careful = True

    def _dialect(self, scan: TextScan) -> tuple[str, bool]:
        """The delimiter, and whether the file starts with an Excel ``sep=`` line."""
        enc = scan.encoding
        sample = codecs.getincrementaldecoder(enc.codec)().decode(
            scan.head[enc.bom_len :], final=scan.size <= len(scan.head)
        )
        sep = _SEP_LINE.match(sample)
        delimiter = self.config.delimiter
        if delimiter == "auto":
            delimiter = sep.group(1) if sep else sniff_delimiter(sample)
        return delimiter, sep is not None

    def _open_text(self, raw: BinaryIO, scan: TextScan) -> io.TextIOWrapper:
        return io.TextIOWrapper(raw, encoding=scan.encoding.codec, errors="strict", newline="")

    def _reader(self, text: io.TextIOWrapper, delimiter: str) -> Any:
        return csv.reader(text, delimiter=delimiter, quotechar=self.config.quotechar, strict=False)

    def _preamble(
        self, scan: TextScan, reader: Any, src: Iterator[Any], offset: int
    ) -> tuple[list[str], int, Iterator[Any]] | None:
        """Skip ``skip_rows``, blank lines and the header: ``(header, mark, rows)`` or None.

        ``mark`` is the reader's line count before the first data row.

        Raises:
            _Restart: the csv module failed on the fast path.
            ParseError: the first record cannot be parsed (careful path).
        """
        cfg = self.config
        try:
            for _ in range(cfg.skip_rows):
                next(src, None)
            mark, first = reader.line_num, next(src, None)
            while first == []:  # blank lines before the header
                mark, first = reader.line_num, next(src, None)
        except csv.Error:
            raise _Restart from None
        if first is None:
            return None
        if isinstance(first, _CsvFailure):
            raise ParseError(
                "the first record cannot be parsed",
                details=first.message,
                context={"file": scan.path, "line": offset + first.line},
            )
        if cfg.has_header:
            return header_names(first), reader.line_num, src
        return [f"column_{i}" for i in range(1, len(first) + 1)], mark, chain([first], src)

    def _preamble_of(self, scan: TextScan) -> tuple[str, list[str], int] | None:
        """``(delimiter, header, physical lines before the first data row)``, or None."""
        delimiter, has_sep = self._dialect(scan)
        with open(scan.path, "rb", buffering=_BUFFER) as raw:
            raw.seek(scan.encoding.bom_len)
            text = self._open_text(raw, scan)
            if has_sep:
                text.readline()
            reader = self._reader(text, delimiter)
            head = self._preamble(scan, reader, reader, int(has_sep))
        if head is None:
            return None
        header, mark, _ = head
        return delimiter, header, int(has_sep) + mark

    def _parse(self, plan: CsvPlan, skip: int, careful: bool) -> Iterator[RawBatch]:
        """Read the whole file with the csv module (files that cannot be cut)."""
        scan = plan.scan
        delimiter, has_sep = self._dialect(scan)
        with open(scan.path, "rb", buffering=_BUFFER) as raw:
            raw.seek(scan.encoding.bom_len)
            text = self._open_text(raw, scan)
            offset = 0
            if has_sep:
                text.readline()
                offset = 1
            reader = self._reader(text, delimiter)
            src: Iterator[Any] = _careful(reader) if careful else reader
            head = self._preamble(scan, reader, src, offset)
            if head is None:
                return
            header, mark, src = head
            rows = _Rows(self, scan, header, delimiter, skip, careful)
            batches = _csv_batches(src, reader, self.config.batch_size)
            yield from self._emit(plan.stream, scan, delimiter, rows.run(batches, mark, offset))

    def _parse_part(
        self, plan: CsvPlan, part: CsvPart, skip: int, careful: bool
    ) -> Iterator[RawBatch]:
        """Read one part: split its lines while they are plain, else the csv module."""
        rows = _Rows(
            self, plan.scan, list(plan.header), plan.delimiter, skip, careful, part.rows_before
        )
        with open(plan.scan.path, "rb", buffering=0) as raw:
            if careful:
                batches = self._csv_range(plan, raw, part.start, part.end, careful=True)
            else:
                batches = self._split_range(plan, raw, part)
            chunks = rows.run(batches, 0, part.lines_before)
            yield from self._emit(plan.stream, plan.scan, plan.delimiter, chunks)

    def _csv_range(
        self,
        plan: CsvPlan,
        raw: BinaryIO,
        start: int,
        end: int,
        *,
        careful: bool,
        base: int = 0,
        first: list[Any] | None = None,
    ) -> Iterator[tuple[list[Any], int]]:
        buffered = io.BufferedReader(RangeReader(raw, start, end), _BUFFER)
        reader = self._reader(self._open_text(buffered, plan.scan), plan.delimiter)
        src: Iterator[Any] = _careful(reader) if careful else reader
        return _csv_batches(src, reader, self.config.batch_size, base, first)

    def _split_range(
        self, plan: CsvPlan, raw: BinaryIO, part: CsvPart
    ) -> Iterator[tuple[list[Any], int]]:
        """Batches of ``(rows, lines read)`` of a part, splitting lines on the delimiter.

        Exact only where a chunk holds no quote character and its line breaks are all LF or
        all CRLF (then each line is one record and csv would split it the same way); from the
        first chunk that is not, the csv module reads the rest of the part.
        """
        codec, delimiter = plan.scan.encoding.codec, plan.delimiter
        quote = self.config.quotechar.encode(codec)
        size = self.config.batch_size
        fd = raw.fileno()
        pending: list[list[str]] = []
        lines = 0
        pos = part.start
        while pos < part.end:
            chunk = os.pread(fd, min(_SPLIT_CHUNK, part.end - pos), pos)
            if pos + len(chunk) < part.end:
                chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
            rows = _split_lines(chunk, quote, codec, delimiter) if chunk else None
            if rows is None:
                break
            pending += rows
            lines += len(rows)
            pos += len(chunk)
            while len(pending) >= size:
                yield pending[:size], lines - len(pending) + size
                del pending[:size]
        if pos < part.end:  # the csv module reads on; the next batch starts with `pending`
            yield from self._csv_range(
                plan, raw, pos, part.end, careful=False, base=lines, first=pending
            )
        elif pending:
            yield pending, lines

    def _emit(
        self, stream: str, scan: TextScan, delimiter: str, chunks: Iterator[_Chunk]
    ) -> Iterator[RawBatch]:
        prov = {
            "connector": self.name,
            "file": scan.path,
            "sha256": scan.sha256,
            "encoding": scan.encoding.name,
            "delimiter": delimiter,
        }
        for records, keys, positions, errors, last in chunks:
            yield RawBatch(
                stream=stream,
                records=records,
                keys=keys,
                positions=positions,
                cursor={"sha256": scan.sha256, "row": last},
                errors=errors,
                provenance=dict(prov),
            )


def _csv_batches(
    src: Iterator[Any], reader: Any, size: int, base: int = 0, first: list[Any] | None = None
) -> Iterator[tuple[list[Any], int]]:
    """Batches of ``(rows, reader lines read + base)`` from a csv reader.

    ``first``: rows read before the reader's, which begin the first batch.
    """
    rows = first or []
    while True:
        try:
            rows += islice(src, size - len(rows))
        except csv.Error:
            raise _Restart from None
        if not rows:
            return
        yield rows, base + reader.line_num
        rows = []


def _split_lines(chunk: bytes, quote: bytes, codec: str, delimiter: str) -> list[list[str]] | None:
    """The rows of whole lines ``chunk`` as csv reads them, or None when it may differ.

    Without a quote character a record is one line, and csv's fields are the line split on
    the delimiter: identical when every line break is LF, or every one is CRLF (a lone CR is
    a line break to csv).  A blank line is an empty row, as csv gives it.
    """
    if chunk.find(quote) >= 0:
        return None
    crs = chunk.count(b"\r") if b"\r" in chunk else 0  # a memchr first: most files have none
    text = chunk.decode(codec)  # strict; the scan proved the file decodes
    if crs:
        lines = text.split("\r\n")
        if len(lines) != crs + 1 or chunk.count(b"\n") != crs:
            return None  # a lone CR, or LF and CRLF mixed in one chunk
    else:
        lines = text.split("\n")
    if not lines[-1]:
        lines.pop()  # after the last line break
    rows = list(map(str.split, lines, repeat(delimiter)))
    if "" in lines:
        rows = [row if line else [] for row, line in zip(rows, lines, strict=True)]
    return rows


# a file's dialect (delimiter), header and parts
_Cut = tuple[str, list[str], tuple[CsvPart, ...]]

_Chunk = tuple[Sequence[dict[str, Any]], list[str], list[int], list[RowError], int]


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
        rows_before: int = 0,
    ) -> None:
        cfg = conn.config
        self.rows_before = rows_before
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

    def run(
        self, batches: Iterator[tuple[list[Any], int]], mark: int, offset: int
    ) -> Iterator[_Chunk]:
        """Yield ``(records, keys, positions, errors, last row)`` per batch of rows.

        ``batches`` gives ``(rows, lines read)``; ``mark`` is the lines read before the first
        row and ``offset`` the physical lines before what the reader reads.
        """
        header, width, prefix, skip = self.header, {self.width}, self.prefix, self.skip
        quick, n = self.quick_chars, self.rows_before
        for rows, now in batches:
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
                records = HeaderRows(header, rows)
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
