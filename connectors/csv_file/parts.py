"""Cutting a CSV file into byte ranges that worker processes read in parallel.

A part begins at a line that is certainly the start of a record, and carries how many rows and
physical lines come before it, so a reader that starts there numbers its rows (and so keys
them, ``sha256[:16]:row``) exactly as a read from the top of the file would.

That is only knowable cheaply where every line holds exactly one record.  :func:`plan_cuts`
proves it region by region with C-speed byte operations: no quote character (so no field spans
lines), and every CR part of a CRLF (so the csv module's line breaks are exactly the LF bytes).
It counts lines and blank lines (which carry no row number) on the way.  At the first region
that fails the proof it stops cutting: everything from there is one last part, which begins at
a proven record start and is read with the csv module.  A file whose header lines are not
plain, or in an encoding where an LF byte can sit inside a character, is one part.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from connectors.text_scan import TextScan

# parts smaller than this are not worth a task of their own
MIN_PART_BYTES = 1 << 16
_PIECE = 1 << 20
# one part in this many, at the end of a file, is a short one (see part_targets)
TAIL_SHARE = 8
_LF, _CR = 10, 13


@dataclass(frozen=True, slots=True)
class CsvPart:
    """One byte range of a file, starting at the first byte of a line.

    Attributes:
        start: offset of the part's first byte.
        end: offset after its last byte.
        rows_before: rows (records with a row number) before the part, header excluded.
        lines_before: physical lines before the part, counting a ``sep=`` line and the header.
    """

    start: int
    end: int
    rows_before: int
    lines_before: int


@dataclass(frozen=True, slots=True)
class CsvPlan:
    """How to read one file: its scan, its dialect and, when it can be cut, its parts.

    Built once by :meth:`CsvFileConnector.plan_parts` (in the runner's process) and handed to
    the workers, so the file is scanned once.  ``ranges`` cover the data after the header; they
    are empty when even the data's start is not proven, and the csv module reads the file from
    its first byte.
    """

    stream: str
    scan: TextScan
    size: int
    mtime_ns: int
    delimiter: str
    header: tuple[str, ...]
    ranges: tuple[CsvPart, ...]

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (hex), from which every row key derives."""
        return self.scan.sha256

    @property
    def parts(self) -> int:
        """How many parts to read: one when the file is read whole."""
        return max(1, len(self.ranges))


class RangeReader(io.RawIOBase):
    """A raw binary stream over ``[start, end)`` of an open file (for a buffered reader)."""

    def __init__(self, raw: BinaryIO, start: int, end: int) -> None:
        super().__init__()
        self._raw = raw
        self._pos = start
        self._end = end

    def readable(self) -> bool:
        """This stream only reads."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the range; 0 at its end."""
        want = min(len(buffer), self._end - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._raw.fileno(), want, self._pos)
        n = len(data)
        memoryview(buffer)[:n] = data
        self._pos += n
        return n


def line_safe_codec(codec: str) -> bool:
    """Tell whether an LF, CR or ASCII byte always stands for itself in ``codec``.

    True for UTF-8, ASCII and the single-byte code pages whose lower half is ASCII; not for
    UTF-16 or multi-byte Asian encodings, where those bytes can be half of a character.
    """
    name = codecs.lookup(codec).name
    if name in ("utf-8", "ascii", "iso8859-1"):
        return True
    decoder = codecs.lookup(name).incrementaldecoder
    module = sys.modules.get(decoder.__module__) if decoder is not None else None
    table = getattr(module, "decoding_table", None)
    return isinstance(table, str) and len(table) == 256 and table[:128] == _ASCII


_ASCII = "".join(map(chr, range(128)))


def nth_line_end(raw: BinaryIO, start: int, lines: int) -> int | None:
    """Return the offset after the ``lines``-th LF from ``start`` (None past the end)."""
    pos = start
    while lines > 0:
        chunk = os.pread(raw.fileno(), 1 << 16, pos)
        if not chunk:
            return None
        count = chunk.count(b"\n")
        if count < lines:
            lines -= count
            pos += len(chunk)
            continue
        at = -1
        for _ in range(lines):
            at = chunk.index(b"\n", at + 1)
        return pos + at + 1
    return pos


def _next_line_start(raw: BinaryIO, at: int, size: int) -> int:
    """The offset of the first line that begins at or after ``at`` (``size`` if none)."""
    pos = at - 1
    while pos < size:
        chunk = os.pread(raw.fileno(), 1 << 16, pos)
        if not chunk:
            break
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)
    return size


class _Irregular(Exception):
    """The region holds a line that is not exactly one record."""


class _Counter:
    """Checks pieces that start at line starts and end after an LF; counts lines and blanks."""

    def __init__(self, quote: bytes) -> None:
        import numpy as np  # only the planner needs it, and the runner's process has it

        self.np = np
        self.quote = quote

    def feed(self, piece: bytes) -> tuple[int, int]:
        """Return ``(lines, blank lines)`` of ``piece``; raise ``_Irregular`` when it cannot.

        numpy compares 32 bytes at a time: the line ends' and CRs' offsets give the count, the
        blank lines and the CRLF check at ~0.3 ns a byte, where ``bytes.count`` takes ~1 ns and
        looking for ``b"\n\n"`` ~3 ns (CPython's search of a two-byte needle whose first byte
        is common).
        """
        if piece.find(self.quote) >= 0:
            raise _Irregular
        np = self.np
        a = np.frombuffer(piece, dtype=np.uint8)
        crs = 0
        if b"\r" in piece:  # a memchr: most files have no CR at all
            after = np.flatnonzero(a == _CR) + 1
            if after[-1] >= len(a) or not bool((a[after] == _LF).all()):
                raise _Irregular  # a CR that does not end a CRLF: csv splits lines there too
            crs = len(after)
        return self.with_arrays(a, crs)

    def with_arrays(self, a: Any, crs: int) -> tuple[int, int]:
        """``feed``'s count for a checked piece (as a uint8 array) with ``crs`` CRs."""
        np = self.np
        nl = np.flatnonzero(a == _LF)
        if not len(nl):
            return 0, 0
        starts = np.empty_like(nl)
        starts[0:1] = 0
        starts[1:] = nl[:-1] + 1
        length = nl - starts  # bytes before the LF
        blank = int(np.count_nonzero(length == 0))
        if crs:
            blank += int(np.count_nonzero((length == 1) & (a[starts] == _CR)))
        return len(nl), blank


def _count_region(raw: BinaryIO, start: int, end: int, counter: _Counter) -> tuple[int, int]:
    """Lines and blank lines of ``[start, end)``, which starts a line and ends after an LF."""
    lines = blank = 0
    pos = start
    while pos < end:
        piece = os.pread(raw.fileno(), min(_PIECE, end - pos), pos)
        if not piece:
            raise _Irregular  # the file shrank under us
        cut = piece.rfind(b"\n") + 1
        while cut == 0:  # one line longer than a piece: read on to its end
            more = os.pread(raw.fileno(), _PIECE, pos + len(piece))
            if not more:
                raise _Irregular
            piece += more
            cut = piece.rfind(b"\n") + 1
        n, b = counter.feed(piece[:cut] if cut < len(piece) else piece)
        lines += n
        blank += b
        pos += cut
    return lines, blank


def _counted(raw: BinaryIO, start: int, end: int, counter: _Counter) -> tuple[int, int] | None:
    """:func:`_count_region`, or None where the region is irregular."""
    try:
        return _count_region(raw, start, end, counter)
    except _Irregular:
        return None


def _plain(region: bytes, quote: bytes) -> bool:
    """No quote, and every CR ends a CRLF: each line of ``region`` is one record."""
    if region.find(quote) >= 0:
        return False
    if b"\r" not in region:
        return True
    return region.count(b"\r\n") == region.count(b"\r")


def part_targets(start: int, end: int, parts: int) -> list[int]:
    """Where ``parts`` parts of ``[start, end)`` should end (before moving to a line start).

    The last ``parts // TAIL_SHARE`` parts are a quarter of the others' size: readers that
    take the next part whenever they are free then finish within a short part of each other,
    rather than one reader working through a whole last part while the others wait.
    """
    tail = parts // TAIL_SHARE
    units = 4 * (parts - tail) + tail  # a part is 4 units, a tail part 1
    span = end - start
    targets: list[int] = []
    done = 0
    for k in range(1, parts):
        done += 4 if k <= parts - tail else 1
        targets.append(start + span * done // units)
    return targets


def plan_cuts(
    path: str,
    scan: TextScan,
    *,
    lines_before_data: int,
    quote: str,
    parts: int,
    min_part_bytes: int = MIN_PART_BYTES,
) -> tuple[CsvPart, ...]:
    """Cut the data of a file (after its first ``lines_before_data`` lines) at line starts.

    Args:
        path: the file.
        scan: its scan (size, encoding).
        lines_before_data: physical lines before the first data row (a ``sep=`` line,
            skipped rows, blank lines and the header), as the csv module counted them.
        quote: the quote character.
        parts: how many parts are wanted.
        min_part_bytes: the smallest part worth cutting.

    Returns:
        Up to ``parts`` parts covering the data; one part when it cannot be cut exactly;
        ``()`` when even the data's first byte cannot be found without the csv module
        (a quoted header, CR line breaks, an encoding where LF can be half a character).
    """
    codec = scan.encoding.codec
    if not line_safe_codec(codec):
        return ()
    quote_bytes = quote.encode(codec)
    size, bom = scan.size, scan.encoding.bom_len
    with open(path, "rb", buffering=0) as raw:
        data_start = nth_line_end(raw, bom, lines_before_data)
        if data_start is None:
            return ()
        if not _plain(os.pread(raw.fileno(), data_start - bom, bom), quote_bytes):
            return ()  # the header's lines are not one record each: data_start is unproven
        whole = (CsvPart(data_start, size, 0, lines_before_data),)
        parts = min(parts, (size - data_start) // min_part_bytes)
        if parts < 2:
            return whole
        cuts: list[int] = []
        for target in part_targets(data_start, size, parts):
            at = _next_line_start(raw, target, size)
            if at < size and at > (cuts[-1] if cuts else data_start):
                cuts.append(at)
        if not cuts:
            return whole
        counter = _Counter(quote_bytes)
        regions = list(zip([data_start, *cuts[:-1]], cuts, strict=True))
        first_irregular = [len(regions)]

        def count_region(k: int) -> tuple[int, int] | None:
            # the regions after an irregular one are read as one part: not worth counting
            if k > first_irregular[0]:
                return None
            got = _counted(raw, *regions[k], counter)
            if got is None:
                first_irregular[0] = min(first_irregular[0], k)
            return got

        # two threads: pread and numpy's compares release the GIL (~0.27 -> ~0.15 s for 226 MB)
        with ThreadPoolExecutor(2, thread_name_prefix="junction-csv-plan") as pool:
            counts = list(pool.map(count_region, range(len(regions))))
        out: list[CsvPart] = []
        start, rows, lines = data_start, 0, lines_before_data
        for (_, cut), count in zip(regions, counts, strict=True):
            if count is None:
                break  # the parts so far are exact; the rest is read as one part, from `start`
            n, blank = count
            out.append(CsvPart(start, cut, rows, lines))
            start, rows, lines = cut, rows + n - blank, lines + n
        out.append(CsvPart(start, size, rows, lines))
    return tuple(out)
