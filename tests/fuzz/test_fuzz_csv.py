"""Fuzz the CSV file connector: any bytes, read through ``CsvFileConnector.read``.

A file either reads (good rows as text records, bad rows as ``RowError`` in the batch) or fails
as a whole with a Junction error; nothing else may escape, and row keys stay unique.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import RowError
from connectors.csv_file import CsvFileConfig, CsvFileConnector
from junction.core.errors import JunctionError
from tests.fuzz.support import fuzz_settings

pytestmark = pytest.mark.fuzz

CELL_CHARS = st.sampled_from(list(",;\t|\"'\r\n \x00=+-@") + list("abcЖжё1.é€"))
CELLS = st.one_of(st.text(CELL_CHARS, max_size=12), st.text(max_size=8))


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """CSV-shaped text (ragged rows, stray quotes, separators, a sep= line) in some encoding."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = draw(st.lists(st.lists(CELLS, min_size=1, max_size=5), max_size=8))
    quote_all = draw(st.booleans())
    lines = []
    for row in rows:
        cells = [f'"{c}"' if quote_all else c for c in row]
        lines.append(delimiter.join(cells))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    if draw(st.booleans()):
        text = f"sep={delimiter}\n" + text
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1251", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()) and data:  # damage: cut or flip a byte
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


CONFIGS = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from(["auto", ",", ";", "\t", "|"]),
        "encoding": st.sampled_from(["auto", "utf-8", "cp1251"]),
        "has_header": st.booleans(),
        "skip_rows": st.integers(0, 2),
        "batch_size": st.integers(1, 4),
        "max_field_bytes": st.sampled_from([8, 1024, 131072]),
    }
)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def read_file(folder: Path, data: bytes, options: dict[str, Any]) -> None:
    path = folder / "drop.csv"
    path.write_bytes(data)
    connector = CsvFileConnector(
        CsvFileConfig(path=str(folder), settle_seconds=0, **options)  # type: ignore[arg-type]
    )
    keys: list[str] = []
    try:
        for batch in connector.read(str(path), None):
            assert len(batch.records) == len(batch.keys) == len(batch.positions)
            for record in batch.records:
                assert all(isinstance(k, str) for k in record)
                assert all(isinstance(v, str) for v in record.values()), record
            for error in batch.errors:
                assert isinstance(error, RowError)
                assert isinstance(error.error, JunctionError)
            keys += batch.keys + [e.key for e in batch.errors]
    except JunctionError:
        return  # a file-level failure, typed: the file is quarantined
    finally:
        connector.close()
    assert len(keys) == len(set(keys)), "row keys repeat"


@fuzz_settings(max_examples=100)
@given(data=st.one_of(csv_bytes(), st.binary(max_size=400)), options=CONFIGS)
def test_csv_reader_raises_only_documented_errors(
    folder: Path, data: bytes, options: dict[str, Any]
) -> None:
    read_file(folder, data, options)


def collect(batches: Any) -> tuple[list[dict[str, str]], list[str], list[tuple[str, str]]]:
    records: list[dict[str, str]] = []
    keys: list[str] = []
    errors: list[tuple[str, str]] = []
    for batch in batches:
        records += batch.records
        keys += batch.keys
        errors += [(e.key, type(e.error).__name__) for e in batch.errors]
    return records, keys, errors


@fuzz_settings(max_examples=60)
@given(data=csv_bytes(), options=CONFIGS, parts=st.integers(2, 4))
def test_reading_the_parts_equals_reading_the_file(
    folder: Path, data: bytes, options: dict[str, Any], parts: int
) -> None:
    """``plan_parts`` + ``read_part`` yield exactly the rows, keys and row errors ``read`` does."""
    path = folder / "parts.csv"
    path.write_bytes(data)
    connector = CsvFileConnector(
        CsvFileConfig(path=str(folder), settle_seconds=0, **options)  # type: ignore[arg-type]
    )
    whole: Any
    split: Any
    try:
        whole = collect(connector.read(str(path), None))
    except JunctionError as exc:
        whole = type(exc).__name__
    try:
        plan = connector.plan_parts(str(path), None, parts, min_part_bytes=1)
        out: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for part in range(plan.parts):
            for mine, theirs in zip(
                out, collect(connector.read_part(plan, part, None)), strict=True
            ):
                mine += theirs
        split = out
    except JunctionError as exc:
        split = type(exc).__name__
    finally:
        connector.close()
    assert split == whole
