"""``max_rows``: a CSV file with more records than the cap is refused whole before any row is
read (RELIABILITY case 28), whichever step of the check decides: bytes, line breaks or records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.csv_file import CsvFileConfig, CsvFileConnector
from connectors.csv_file.row_cap import line_breaks
from junction.core.errors import TooManyRowsError


def connector(tmp_path: Path, **kw: Any) -> CsvFileConnector:
    return CsvFileConnector(
        CsvFileConfig(path=str(tmp_path / "inbox"), settle_seconds=0, batch_size=7, **kw)
    )


def drop(tmp_path: Path, data: bytes, name: str = "a.csv") -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(data)
    return str(inbox / name)


def plain(rows: int, eol: bytes = b"\n") -> bytes:
    return b"id,name" + eol + b"".join(b"%d,n%d%s" % (i, i, eol) for i in range(rows))


def count(conn: CsvFileConnector, stream: str) -> int:
    return sum(len(b) + len(b.errors) for b in conn.read(stream, None))


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_a_file_one_record_over_the_cap_is_refused_and_one_at_it_is_read(
    tmp_path: Path, eol: bytes
) -> None:
    at_cap = drop(tmp_path, plain(100, eol), "at.csv")
    over = drop(tmp_path, plain(101, eol), "over.csv")
    conn = connector(tmp_path, max_rows=100)
    assert count(conn, at_cap) == 100
    with pytest.raises(TooManyRowsError) as info:
        conn.read(over, None)  # raised by the plan, before any batch exists
    assert info.value.code == "too_many_rows"
    assert info.value.context["limit"] == 100
    assert info.value.context["rows_at_least"] == 101
    assert "100" in info.value.user_message


def test_records_spanning_lines_are_counted_as_records_not_lines(tmp_path: Path) -> None:
    # 60 records of 3 physical lines each: the line-break bound (180) is over the cap, the
    # records (60) are not, so only the exact count can let the file through
    body = b"".join(b'%d,"first line\nsecond\nthird"\n' % i for i in range(60))
    stream = drop(tmp_path, b"id,note\n" + body)
    assert count(connector(tmp_path, max_rows=60), stream) == 60
    with pytest.raises(TooManyRowsError):
        connector(tmp_path, max_rows=59).read(stream, None)


def test_a_file_cut_into_parts_is_checked_on_its_last_part(tmp_path: Path) -> None:
    stream = drop(tmp_path, plain(3000))
    conn = connector(tmp_path, max_rows=3000)
    plan = conn.plan_parts(stream, None, 6, min_part_bytes=512)
    assert plan.parts > 2  # the exact rows before the last part come from the cut
    rows = sum(len(b) for part in range(plan.parts) for b in conn.read_part(plan, part, None))
    assert rows == 3000
    with pytest.raises(TooManyRowsError):
        connector(tmp_path, max_rows=2999).plan_parts(stream, None, 6, min_part_bytes=512)


def test_no_cap_and_small_files_read_everything(tmp_path: Path) -> None:
    stream = drop(tmp_path, plain(500))
    assert count(connector(tmp_path, max_rows=None), stream) == 500
    # fewer data bytes than the cap: within it without counting anything
    assert count(connector(tmp_path, max_rows=10_000), stream) == 500


def test_line_breaks_bound_records_in_every_convention(tmp_path: Path) -> None:
    path = tmp_path / "eol.bin"
    path.write_bytes(b"a\nb\r\nc\rd\r\n\re")  # LF, CRLF, CR, CRLF, CR, no final break
    assert line_breaks(str(path), 0, path.stat().st_size) == 5
    assert CsvFileConfig(path="x").max_rows == 10_000_000
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        CsvFileConfig(path="x", max_rows=0)
