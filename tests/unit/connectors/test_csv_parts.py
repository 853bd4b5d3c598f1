"""Reading a CSV file in parts, and the line-splitting fast path, give exactly what csv gives.

The reference is the same connector with the fast path switched off (every chunk goes to the
csv module), and a whole-file read; every part plan must reproduce its rows, row numbers,
keys, errors and the cursor they resume from.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import connectors.csv_file.connector as csv_connector
import connectors.csv_file.parts as parts_module
from connectors.base import RawBatch
from connectors.csv_file import CsvFileConfig, CsvFileConnector
from connectors.csv_file.parts import (
    TAIL_SHARE,
    CsvPlan,
    _Counter,
    _Irregular,
    line_safe_codec,
    part_targets,
)
from connectors.text_scan import TextScan
from junction.core.errors import JunctionError, UnavailableError


def connector(tmp_path: Path, **kw: Any) -> CsvFileConnector:
    kw.setdefault("settle_seconds", 0)
    kw.setdefault("batch_size", 7)
    return CsvFileConnector(CsvFileConfig(path=str(tmp_path / "inbox"), **kw))


def drop(tmp_path: Path, data: bytes, name: str = "f.csv") -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(data)
    return str(inbox / name)


def rows_of(batches: list[RawBatch]) -> list[tuple[Any, ...]]:
    """Every row and row error with its key, position and details, in row order."""
    out: list[tuple[Any, ...]] = []
    for b in batches:
        rows = zip(b.records, b.keys, b.positions, strict=True)
        out += [("row", k, p, tuple(r.items())) for r, k, p in rows]
        for e in b.errors:
            err = e.error
            assert isinstance(err, JunctionError)
            out.append(("error", e.key, e.position, e.raw, err.code, str(err), err.context))
    return sorted(out, key=lambda x: (x[2], x[0]))


def read_parts(conn: CsvFileConnector, plan: CsvPlan, cursor: dict[str, Any] | None) -> list:
    return [b for part in range(plan.parts) for b in conn.read_part(plan, part, cursor)]


def csv_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every chunk to the csv module: the reference behaviour."""
    monkeypatch.setattr(csv_connector, "_split_lines", lambda *a: None)


def sample(rnd: random.Random, nl: str, n: int, **odds: float) -> str:
    lines = ["id,name,city"]
    for i in range(n):
        r = rnd.random()
        if r < odds.get("blank", 0):
            lines.append("")
        elif r < odds.get("blank", 0) + odds.get("ragged", 0):
            lines.append(f"{i},only")
        elif r < odds.get("blank", 0) + odds.get("ragged", 0) + odds.get("space", 0):
            lines.append("   ")
        else:
            name = rnd.choice(["Ann", "Bob Ray", "Жанна", "Анна-Мария"])
            lines.append(f"{i},{name},{'x' * (i % 40)}")
    return nl.join(lines) + nl


CASES: dict[str, dict[str, Any]] = {
    "lf": {"nl": "\n"},
    "crlf": {"nl": "\r\n"},
    "blank lines and ragged rows": {"nl": "\n", "blank": 0.1, "ragged": 0.05, "space": 0.05},
    "crlf blanks": {"nl": "\r\n", "blank": 0.2},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1251"])
def test_parts_read_exactly_what_a_whole_read_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, encoding: str
) -> None:
    text = sample(random.Random(case), n=400, **CASES[case])
    data = text.encode("cp1251" if encoding == "cp1251" else "utf-8")
    if encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + data
    stream = drop(tmp_path, data)
    conn = connector(tmp_path, encoding="cp1251" if encoding == "cp1251" else "auto")
    plan = conn.plan_parts(stream, None, 6, min_part_bytes=512)
    assert plan.parts == 6
    assert [p.start for p in plan.ranges[1:]] == [p.end for p in plan.ranges[:-1]]
    for p in plan.ranges[1:]:
        assert data[p.start - 1 : p.start] == b"\n"  # every part starts a line
    whole = list(conn.read(stream, None))
    csv_only(monkeypatch)
    reference = list(conn.read(stream, None))
    assert rows_of(whole) == rows_of(reference)
    assert [b.cursor for b in whole] == [b.cursor for b in reference]  # same batches too
    assert rows_of(read_parts(conn, plan, None)) == rows_of(reference)
    sha = plan.sha256
    for row in (0, 1, 57, 200, 10**6):
        cursor = {"sha256": sha, "row": row}
        after = [r for r in rows_of(reference) if r[2] > row]
        assert rows_of(read_parts(conn, plan, cursor)) == after


def test_each_part_knows_the_rows_and_lines_before_it(tmp_path: Path) -> None:
    data = b"sep=;\nid;v\n" + b"".join(b"%d;x\n" % i if i % 5 else b"\n" for i in range(1, 301))
    stream = drop(tmp_path, data)
    plan = connector(tmp_path).plan_parts(stream, None, 4, min_part_bytes=100)
    assert plan.delimiter == ";"
    assert plan.header == ("id", "v")
    first = plan.ranges[0]
    assert (first.start, first.rows_before, first.lines_before) == (data.index(b"1;x"), 0, 2)
    for part in plan.ranges:
        before = data[first.start : part.start]
        lines = before.count(b"\n")
        blank = before.count(b"\n\n") + (before[:1] == b"\n")  # no two blank lines in a row
        assert part.lines_before == 2 + lines
        assert part.rows_before == lines - blank


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('1,"a\nb"\n', "a quoted line break"),
        ('1,"plain quotes"\n', "a quote character"),
        ("1,a\r2,b\r\n", "a CR that ends a line"),
    ],
)
def test_a_file_is_cut_only_before_its_first_irregular_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, why: str
) -> None:
    head = "".join(f"{i},v\n" for i in range(100, 400))
    tail = "".join(f"{i},w\n" for i in range(400, 700))
    stream = drop(tmp_path, f"id,v\n{head}{body}{tail}".encode())
    conn = connector(tmp_path)
    plan = conn.plan_parts(stream, None, 8, min_part_bytes=256)
    irregular_at = Path(stream).read_bytes().index(body.encode())
    last = plan.ranges[-1]
    assert 1 < plan.parts < 8, why
    assert last.start <= irregular_at < last.end  # the rest is one part, read by csv
    csv_only(monkeypatch)
    assert rows_of(read_parts(conn, plan, None)) == rows_of(list(conn.read(stream, None)))


@pytest.mark.parametrize(
    ("data", "kw"),
    [
        (b'"id","name"\n"1","a"\n' * 200, {}),  # quoted header: no proven data start
        ("id;name\n1;a\n".encode("utf-16"), {}),  # LF can be half a character
        (b"", {}),
        (b"id,name\n", {}),
    ],
)
def test_files_that_cannot_be_cut_are_one_part(
    tmp_path: Path, data: bytes, kw: dict[str, Any]
) -> None:
    stream = drop(tmp_path, data)
    conn = connector(tmp_path, **kw)
    plan = conn.plan_parts(stream, None, 4, min_part_bytes=1)
    assert plan.parts == 1
    assert rows_of(read_parts(conn, plan, None)) == rows_of(list(conn.read(stream, None)))


@pytest.mark.parametrize("chunk", [8, 64, 1 << 18])
def test_the_fast_path_over_any_chunk_size_matches_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    rnd = random.Random(chunk)
    lines = ["id,name"]
    for i in range(300):
        lines.append(rnd.choice([f"{i},plain", "", f"{i},a,b", f"{i},\x00nul", f'{i},"q,x"']))
    text = "\r\n".join(lines[:150]) + "\r\n" + "\n".join(lines[150:]) + "\n"
    stream = drop(tmp_path, text.encode())
    conn = connector(tmp_path, max_field_bytes=40)
    monkeypatch.setattr(csv_connector, "_SPLIT_CHUNK", chunk)
    fast = list(conn.read(stream, None))
    csv_only(monkeypatch)
    reference = list(conn.read(stream, None))
    assert rows_of(fast) == rows_of(reference)
    assert [b.cursor for b in fast] == [b.cursor for b in reference]


def test_a_file_changed_after_planning_is_not_read(tmp_path: Path) -> None:
    stream = drop(tmp_path, b"id\n" + b"1\n" * 2000)
    conn = connector(tmp_path)
    plan = conn.plan_parts(stream, None, 2, min_part_bytes=1)
    with open(stream, "ab") as f:
        f.write(b"2\n")
    os.utime(stream, ns=(plan.mtime_ns + 10**9, plan.mtime_ns + 10**9))
    with pytest.raises(UnavailableError, match="changed"):
        conn.read_part(plan, 0, None)


def test_line_safe_codecs() -> None:
    assert all(map(line_safe_codec, ["utf-8", "ascii", "cp1251", "cp1252", "latin-1", "cp866"]))
    assert not any(map(line_safe_codec, ["utf-16-le", "utf-32", "shift_jis", "gb18030"]))


def test_the_array_count_matches_the_lines_csv_sees() -> None:
    """``feed`` counts lines and blank lines with numpy: the same as splitting the text."""
    counter = _Counter(b'"')
    rnd = random.Random(7)
    regular = blanks = 0
    for _ in range(20_000):
        piece = bytes(rnd.choice(b"ab,\r\n") for _ in range(rnd.randint(0, 12))) + b"\n"
        if rnd.random() < 0.05:
            piece = b'x"y' + piece  # a quote: never cut here
        lone_cr = piece.count(b"\r") != piece.count(b"\r\n")
        if b'"' in piece or lone_cr:
            with pytest.raises(_Irregular):
                counter.feed(piece)
            continue
        lines = piece.split(b"\n")[:-1]  # every piece ends with its last line's LF
        crlf = b"\r" in piece
        blank = sum(1 for line in lines if line == b"" or (crlf and line == b"\r"))
        assert counter.feed(piece) == (len(lines), blank), piece
        regular += 1
        blanks += blank > 0
    assert regular > 5000
    assert blanks > 1000


def spy_cuts(monkeypatch: pytest.MonkeyPatch, what: Callable[[TextScan], str]) -> list[str]:
    """Record ``what`` of the scan every cut of a file is made from (the cut itself runs)."""
    seen: list[str] = []
    real_cut = CsvFileConnector._cut

    def cut(self: CsvFileConnector, scan: TextScan, *args: Any) -> Any:
        seen.append(what(scan))
        return real_cut(self, scan, *args)

    monkeypatch.setattr(CsvFileConnector, "_cut", cut)
    return seen


def test_the_cut_made_beside_the_scan_is_the_cut_made_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cut from the head's encoding runs while the scan hashes the file; it is kept only
    # when the scan settles on that encoding, and it equals the cut made after the scan
    text = sample(random.Random(7), "\n", n=3000)
    stream = drop(tmp_path, text.encode())
    conn = connector(tmp_path)
    cuts = spy_cuts(monkeypatch, lambda scan: scan.sha256)
    plan = conn.plan_parts(stream, None, 5, min_part_bytes=512)
    assert cuts == [""]  # one cut, from the probe (no hash yet), and it was kept
    monkeypatch.setattr(CsvFileConnector, "_early_cut", lambda *a: None)
    after = conn.plan_parts(stream, None, 5, min_part_bytes=512)
    assert cuts == ["", plan.sha256]
    assert (plan.ranges, plan.header, plan.delimiter, plan.scan) == (
        after.ranges,
        after.header,
        after.delimiter,
        after.scan,
    )


def test_a_cut_from_a_head_the_scan_overrules_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an ASCII head reads as UTF-8; the scan meets cp1251 further on and settles on it: the
    # early cut (made as UTF-8) is dropped, and the parts read as cp1251, like a whole read
    head = "id,name,city\n" + "".join(f"{i},Ann,Oslo\n" for i in range(8000))
    words = ["Жанна", "Москва", "Дмитрий", "Екатеринбург", "Ольга", "Новосибирск", "Сергей"]
    tail = "".join(f"{i},{words[i % 7]},{words[(i + 3) % 7]}\n" for i in range(8000, 8600))
    stream = drop(tmp_path, (head + tail).encode("cp1251"))
    conn = connector(tmp_path)
    cuts = spy_cuts(monkeypatch, lambda scan: scan.encoding.codec)
    plan = conn.plan_parts(stream, None, 4, min_part_bytes=512)
    assert plan.scan.encoding.codec == "cp1251"
    assert cuts == ["utf-8", "cp1251"]
    assert plan.parts == 4
    parts = rows_of(read_parts(conn, plan, None))
    assert parts == rows_of(list(conn.read(stream, None)))
    assert parts[-1][3] == (("id", "8599"), ("name", "Екатеринбург"), ("city", "Сергей"))


@pytest.mark.parametrize("parts", [1, 2, 7, 8, 56, 128])
def test_the_last_parts_are_short_ones(parts: int) -> None:
    # readers that each take the next part when free then end within a short part of each
    # other: one part in TAIL_SHARE, at the end, is a quarter of the others
    start, end = 1000, 1000 + 4_000_000
    targets = part_targets(start, end, parts)
    sizes = [b - a for a, b in zip([start, *targets], [*targets, end], strict=True)]
    assert len(sizes) == parts
    assert sum(sizes) == end - start
    tail = parts // TAIL_SHARE
    full, short = sizes[: parts - tail], sizes[parts - tail :]
    assert max(full) - min(full) <= 1
    assert all(abs(4 * s - full[0]) <= 4 for s in short)


def test_the_regions_after_an_irregular_one_are_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a quote early in a file ends the exact parts there: the rest is one part, and counting
    # its regions would be work for nothing
    rows = "".join(f"{i},v\n" for i in range(4000))
    stream = drop(tmp_path, f'id,v\n1,"q"\n{rows}'.encode())
    counted: list[int] = []
    real_count = parts_module._count_region
    first_done = threading.Event()

    def count_region(raw: Any, start: int, end: int, counter: Any) -> tuple[int, int]:
        counted.append(start)
        if start != len(b"id,v\n"):  # not the first region: not before that one is known
            first_done.wait(10)
            return real_count(raw, start, end, counter)
        try:
            return real_count(raw, start, end, counter)
        finally:
            first_done.set()

    monkeypatch.setattr(parts_module, "_count_region", count_region)
    plan = connector(tmp_path).plan_parts(stream, None, 16, min_part_bytes=512)
    assert plan.parts == 1
    assert len(counted) <= 2  # the irregular first region, and at most one already started
