"""The CSV file-drop connector: decoding, dialects, row errors, cursors, readiness, memory."""

# ruff: noqa: RUF001 - Cyrillic test data is the point, not a homoglyph mistake

from __future__ import annotations

import csv
import gc
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from connectors.base import Capability, RawBatch, RowError, SourceConnector
from connectors.csv_file import CsvFileConfig, CsvFileConnector
from junction.core.errors import (
    ConfigError,
    EncodingError,
    FieldTooLargeError,
    FileTooLargeError,
    JunctionError,
    ParseError,
)

RU = (
    "ИНН;Наименование;Город\n7701000001;ООО «Ромашка»;Москва\n7801000002;АО Север;Санкт-Петербург\n"
)


def connector(tmp_path: Path, **kw: Any) -> CsvFileConnector:
    kw.setdefault("path", str(tmp_path / "inbox"))
    kw.setdefault("settle_seconds", 0)
    return CsvFileConnector(CsvFileConfig(**kw))


def drop(tmp_path: Path, name: str, data: bytes) -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    return str(path)


def read_all(
    conn: CsvFileConnector, stream: str, cursor: dict[str, Any] | None = None
) -> list[RawBatch]:
    return list(conn.read(stream, cursor))


def records(batches: list[RawBatch]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.records]


def jerr(row: RowError) -> JunctionError:
    assert isinstance(row.error, JunctionError)
    return row.error


def test_class_contract() -> None:
    assert CsvFileConnector.name == "csv_file"
    assert CsvFileConnector.config_model is CsvFileConfig
    assert CsvFileConnector.capabilities == {Capability.FILES, Capability.DISCOVER}
    conn = CsvFileConnector(CsvFileConfig(path="/nonexistent"))
    assert isinstance(conn, SourceConnector)
    conn.close()
    conn.close()
    schema = CsvFileConfig.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())


def test_config_rejects_unknown_fields_bad_codecs_and_delimiters() -> None:
    with pytest.raises(ValidationError):
        CsvFileConfig(path="x", nope=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="unknown encoding"):
        CsvFileConfig(path="x", encoding="klingon")
    with pytest.raises(ValidationError, match="not a text encoding"):
        CsvFileConfig(path="x", encoding="base64")
    with pytest.raises(ValidationError):
        CsvFileConfig(path="x", delimiter=";;")
    with pytest.raises(ValidationError):
        CsvFileConfig(path="x", delimiter=";", quotechar=";")
    cfg = CsvFileConfig(path="x")
    with pytest.raises(ValidationError):
        cfg.batch_size = 5  # type: ignore[misc]


def test_utf8_rows_keys_positions_cursor_and_provenance(tmp_path: Path) -> None:
    data = b"id,name\n1,Ann\n2,Bob\n3,Cid\n"
    stream = drop(tmp_path, "a.csv", data)
    sha = hashlib.sha256(data).hexdigest()
    [batch] = read_all(connector(tmp_path), stream)
    assert batch.stream == stream
    assert batch.records == [
        {"id": "1", "name": "Ann"},
        {"id": "2", "name": "Bob"},
        {"id": "3", "name": "Cid"},
    ]
    assert batch.keys == [f"{sha[:16]}:1", f"{sha[:16]}:2", f"{sha[:16]}:3"]
    assert batch.positions == [1, 2, 3]
    assert batch.cursor == {"sha256": sha, "row": 3}
    assert batch.errors == []
    assert batch.provenance["encoding"] == "utf-8"
    assert batch.provenance["delimiter"] == ","
    assert batch.provenance["sha256"] == sha


@pytest.mark.parametrize("encoding", ["auto", "utf-8"])
def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path, encoding: str) -> None:
    stream = drop(tmp_path, "bom.csv", b"\xef\xbb\xbf" + RU.encode("utf-8"))
    [batch] = read_all(connector(tmp_path, encoding=encoding), stream)
    assert next(iter(batch.records[0])) == "ИНН"
    assert batch.records[0]["Наименование"] == "ООО «Ромашка»"
    assert batch.provenance["encoding"] == "utf-8-sig"


@pytest.mark.parametrize("encoding", ["auto", "cp1251", "windows-1251"])
def test_cp1251_auto_and_explicit(tmp_path: Path, encoding: str) -> None:
    stream = drop(tmp_path, "ru.csv", RU.encode("cp1251"))
    [batch] = read_all(connector(tmp_path, encoding=encoding), stream)
    assert batch.records[1] == {
        "ИНН": "7801000002",
        "Наименование": "АО Север",
        "Город": "Санкт-Петербург",
    }
    assert batch.provenance["encoding"] == "cp1251"
    assert batch.provenance["delimiter"] == ";"


def test_short_cp1251_excel_export_is_detected_as_cp1251(tmp_path: Path) -> None:
    # the shape of a real Russian Excel export: '№' (0xB9), '™' (0x99), a quoted newline
    text = '№;Название;Цена\n1;"Игра ""PS4""";3,999\n2;"Одни из нас™\nобновленная";2,199\n'
    stream = drop(tmp_path, "excel.csv", text.encode("cp1251"))
    [batch] = read_all(connector(tmp_path), stream)
    assert batch.provenance["encoding"] == "cp1251"
    assert batch.records[1] == {"№": "2", "Название": "Одни из нас™\nобновленная", "Цена": "2,199"}


def test_cp1251_read_as_utf8_fails_whole_file_without_replacement(tmp_path: Path) -> None:
    data = ("id;name\n1;Ann\n2;Bob\n" + "3;Пётр\n").encode("cp1251")
    stream = drop(tmp_path, "ru.csv", data)
    conn = connector(tmp_path, encoding="utf-8")
    with pytest.raises(EncodingError) as info:
        conn.read(stream, None)  # raised before any iterator, so before any row
    err = info.value
    assert err.context["encoding"] == "utf-8"
    with pytest.raises(UnicodeDecodeError) as plain:
        data.decode("utf-8")
    assert err.context["byte_offset"] == plain.value.start > data.index(b"3;")
    assert err.context["line"] == 4
    assert err.context["file"] == stream
    assert "\ufffd" not in str(err)


def test_undefined_cp1251_byte_fails_strictly(tmp_path: Path) -> None:
    data = b"id;name\n1;\xcf\xf0\xe8\xe2\xe5\xf2\n2;bad\x98byte\n"
    stream = drop(tmp_path, "ru.csv", data)
    with pytest.raises(EncodingError) as info:
        connector(tmp_path, encoding="cp1251").read(stream, None)
    assert info.value.context["byte_offset"] == data.index(b"\x98")
    assert info.value.context["line"] == 3


def test_utf8_file_with_a_late_bad_byte_fails_in_auto_mode(tmp_path: Path) -> None:
    # the head proves UTF-8 (non-ASCII Cyrillic), so a bad byte later is an error, not cp1251
    body = "id,name\n" + "".join(f"{i},Иван\n" for i in range(20_000))
    data = body.encode("utf-8") + b"20000,\xff\xfe\n"
    stream = drop(tmp_path, "late.csv", data)
    with pytest.raises(EncodingError) as info:
        connector(tmp_path).read(stream, None)
    assert info.value.context["byte_offset"] == len(body.encode("utf-8")) + 6
    assert info.value.context["line"] == 20_002


def test_ascii_head_then_cp1251_falls_back_to_a_guess(tmp_path: Path) -> None:
    head = "id;name\n" + "".join(f"{i};Ivan\n" for i in range(10_000))  # > 64 KiB of ASCII
    tail = "".join(f"{i};Иван Петров из Москвы\n" for i in range(10_000, 10_200))
    stream = drop(tmp_path, "mixed.csv", (head + tail).encode("cp1251"))
    batches = read_all(connector(tmp_path, batch_size=5000), stream)
    rows = records(batches)
    assert batches[0].provenance["encoding"] == "cp1251"
    assert rows[-1] == {"id": "10199", "name": "Иван Петров из Москвы"}


def test_bom_contradicting_an_explicit_single_byte_encoding_fails(tmp_path: Path) -> None:
    stream = drop(tmp_path, "bom.csv", b"\xef\xbb\xbf" + RU.encode("utf-8"))
    with pytest.raises(EncodingError, match="byte order mark"):
        connector(tmp_path, encoding="cp1251").read(stream, None)


@pytest.mark.parametrize("encoding", ["auto", "utf-16"])
def test_utf16_le_with_bom(tmp_path: Path, encoding: str) -> None:
    stream = drop(tmp_path, "u16.csv", RU.encode("utf-16"))  # Python writes a BOM
    [batch] = read_all(connector(tmp_path, encoding=encoding), stream)
    assert batch.provenance["encoding"] == "utf-16-le"
    assert list(batch.records[0]) == ["ИНН", "Наименование", "Город"]
    assert batch.records[0]["Наименование"] == "ООО «Ромашка»"


def test_excel_sep_preamble_is_honoured_and_skipped(tmp_path: Path) -> None:
    data = b'sep=;\r\n"age";"job"\r\n30;"blue-collar"\r\n39;"services";extra\r\n'
    stream = drop(tmp_path, "sep.csv", data)
    [batch] = read_all(connector(tmp_path), stream)
    assert batch.provenance["delimiter"] == ";"
    assert batch.records == [{"age": "30", "job": "blue-collar"}]
    [err] = batch.errors
    assert err.position == 2
    assert jerr(err).context["line"] == 4  # physical line, counting the preamble


def test_sniffs_semicolons_tabs_and_pipes(tmp_path: Path) -> None:
    for name, delim in (("semi.csv", ";"), ("tab.csv", "\t"), ("pipe.csv", "|")):
        data = f"a{delim}b{delim}c\n1{delim}2,5{delim}x\n4{delim}5{delim}y\n".encode()
        [batch] = read_all(connector(tmp_path), drop(tmp_path, name, data))
        assert batch.provenance["delimiter"] == delim
        assert batch.records[0] == {"a": "1", "b": "2,5", "c": "x"}


def test_quoted_newlines_crlf_and_classic_mac_endings(tmp_path: Path) -> None:
    crlf = drop(tmp_path, "crlf.csv", b'a,b\r\n"line1\r\nline2",2\r\n3,"x ""q"" y"\r\n')
    mac = drop(tmp_path, "mac.csv", b'a,b,c\r1,2,3\r"Once upon\ra time",5,6\r')
    assert records(read_all(connector(tmp_path), crlf)) == [
        {"a": "line1\r\nline2", "b": "2"},
        {"a": "3", "b": 'x "q" y'},
    ]
    assert records(read_all(connector(tmp_path), mac)) == [
        {"a": "1", "b": "2", "c": "3"},
        {"a": "Once upon\ra time", "b": "5", "c": "6"},
    ]


def test_ragged_rows_and_nul_bytes_are_row_errors_and_reading_goes_on(tmp_path: Path) -> None:
    data = b'a,b,c\n1,2,3\n4,5,6,7\n"multi\nline",8\n\x00,2,3\n9,10,11\n'
    stream = drop(tmp_path, "bad.csv", data)
    [batch] = read_all(connector(tmp_path), stream)
    prefix = hashlib.sha256(data).hexdigest()[:16]
    assert batch.records == [{"a": "1", "b": "2", "c": "3"}, {"a": "9", "b": "10", "c": "11"}]
    assert batch.positions == [1, 5]
    assert batch.keys == [f"{prefix}:1", f"{prefix}:5"]
    long, short, nul = batch.errors
    assert (long.key, long.position, long.raw) == (f"{prefix}:2", 2, b"4,5,6,7")
    assert type(long.error) is ParseError
    assert jerr(long).context.items() >= {"expected": 3, "got": 4, "row": 2, "line": 3}.items()
    assert "expected 3" in jerr(long).user_message
    assert short.position == 3
    assert jerr(short).context["got"] == 2
    assert jerr(short).context["line"] == 4  # where the two-line record starts
    assert short.raw == b'"multi\nline",8'
    assert nul.position == 4
    assert "NUL" in jerr(nul).user_message
    assert jerr(nul).context["line"] == 6
    assert nul.raw == b"\x00,2,3"
    assert batch.cursor["row"] == 5


def test_blank_lines_are_skipped_without_a_row_number(tmp_path: Path) -> None:
    stream = drop(tmp_path, "blank.csv", b"\n\na,b\n1,2\n\n3,4\n\n")
    [batch] = read_all(connector(tmp_path), stream)
    assert batch.records == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert batch.positions == [1, 2]


def test_oversized_field_is_a_row_error_naming_the_column(tmp_path: Path) -> None:
    big = "x" * 2_000
    data = f"id,notes\n1,short\n2,{big}\n3,ok\n".encode()
    stream = drop(tmp_path, "big.csv", data)
    [batch] = read_all(connector(tmp_path, max_field_bytes=1_000), stream)
    assert [r["id"] for r in batch.records] == ["1", "3"]
    [err] = batch.errors
    assert isinstance(err.error, FieldTooLargeError)
    assert err.error.field == "notes"
    assert jerr(err).context["bytes"] == 2_000
    assert jerr(err).context["limit"] == 1_000
    assert big not in jerr(err).user_message


def test_field_size_counts_utf8_bytes(tmp_path: Path) -> None:
    # 600 Cyrillic characters are 1,200 UTF-8 bytes
    data = ("id,notes\n1," + "я" * 600 + "\n2," + "я" * 400 + "\n").encode("cp1251")
    stream = drop(tmp_path, "ru.csv", data)
    [batch] = read_all(connector(tmp_path, encoding="cp1251", max_field_bytes=1_000), stream)
    assert [r["id"] for r in batch.records] == ["2"]
    assert jerr(batch.errors[0]).context["bytes"] == 1_200


def test_oversized_multiline_field_is_reported_and_the_next_row_is_intact(tmp_path: Path) -> None:
    notes = "line\n" * 600  # 3,000 characters over 601 lines, quoted
    data = f'id,notes\n1,a\n2,"{notes}"\n3,b\n'.encode()
    stream = drop(tmp_path, "multi.csv", data)
    [batch] = read_all(connector(tmp_path, max_field_bytes=1_000), stream)
    assert batch.records == [{"id": "1", "notes": "a"}, {"id": "3", "notes": "b"}]
    assert batch.positions == [1, 3]
    [err] = batch.errors
    assert isinstance(err.error, FieldTooLargeError)
    assert (err.position, err.error.field, jerr(err).context["line"]) == (2, "notes", 3)


def test_field_beyond_the_csv_module_limit_is_a_row_error_too(tmp_path: Path) -> None:
    # the csv module itself refuses it; a careful re-read reports the row and keeps going,
    # after the rows already emitted, without gaps or repeats
    before = [f"{i},ok\n" for i in range(1, 6)]
    huge = "x" * (max(csv.field_size_limit(), 1 << 24) + 10)
    data = ("id,notes\n" + "".join(before) + f'6,"{huge}"\n7,b\n').encode()
    stream = drop(tmp_path, "huge.csv", data)
    batches = read_all(connector(tmp_path, batch_size=2), stream)
    assert [r["id"] for r in records(batches)] == ["1", "2", "3", "4", "5", "7"]
    [err] = [e for b in batches for e in b.errors]
    assert isinstance(err.error, FieldTooLargeError)
    assert (err.position, jerr(err).context["line"]) == (6, 7)
    assert [b.cursor["row"] for b in batches] == [2, 4, 6, 7]
    assert csv.field_size_limit() >= 1 << 24


def test_oversized_file_fails_before_reading(tmp_path: Path) -> None:
    stream = drop(tmp_path, "a.csv", b"id\n" + b"1\n" * 600)
    with pytest.raises(FileTooLargeError) as info:
        connector(tmp_path, max_file_bytes=1_000).read(stream, None)
    assert info.value.context["size"] == 1_203


def test_resume_from_cursor_never_re_emits_rows(tmp_path: Path) -> None:
    data = b"n\n" + b"".join(b"%d\n" % i for i in range(1, 26))
    stream = drop(tmp_path, "r.csv", data)
    conn = connector(tmp_path, batch_size=10)
    first = next(iter(conn.read(stream, None)))
    assert first.positions == list(range(1, 11))
    assert first.cursor["row"] == 10
    rest = read_all(conn, stream, first.cursor)
    assert [b.positions[0] for b in rest] == [11, 21]
    assert [r["n"] for r in records(rest)] == [str(i) for i in range(11, 26)]
    assert read_all(conn, stream, rest[-1].cursor) == []
    # resuming in the middle of a batch
    mid = read_all(conn, stream, {"sha256": first.cursor["sha256"], "row": 17})
    assert [b.positions for b in mid] == [[18, 19, 20], [21, 22, 23, 24, 25]]


def test_resume_skips_errored_rows_too(tmp_path: Path) -> None:
    stream = drop(tmp_path, "e.csv", b"a,b\n1,2\n3\n4,5\n6\n7,8\n")
    conn = connector(tmp_path, batch_size=2)
    batches = read_all(conn, stream)
    assert [b.cursor["row"] for b in batches] == [2, 4, 5]
    again = read_all(conn, stream, batches[0].cursor)
    assert [e.position for b in again for e in b.errors] == [4]
    assert [p for b in again for p in b.positions] == [3, 5]


def test_replaced_file_restarts_from_row_one(tmp_path: Path) -> None:
    stream = drop(tmp_path, "r.csv", b"n\n1\n2\n3\n")
    conn = connector(tmp_path)
    [old] = read_all(conn, stream)
    drop(tmp_path, "r.csv", b"n\n1\n2\n3\n4\n")
    [new] = read_all(conn, stream, old.cursor)
    assert new.positions == [1, 2, 3, 4]
    assert new.cursor["sha256"] != old.cursor["sha256"]


def test_invalid_cursor_is_a_config_error(tmp_path: Path) -> None:
    data = b"n\n1\n"
    stream = drop(tmp_path, "r.csv", data)
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(ConfigError):
        connector(tmp_path).read(stream, {"sha256": sha, "row": "7"})


def test_empty_and_header_only_files_yield_nothing(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    assert read_all(conn, drop(tmp_path, "empty.csv", b"")) == []
    assert read_all(conn, drop(tmp_path, "bom.csv", b"\xef\xbb\xbf")) == []
    assert read_all(conn, drop(tmp_path, "head.csv", b"a,b,c\n")) == []


def test_header_cells_are_trimmed_named_and_deduplicated(tmp_path: Path) -> None:
    data = b'" id ",,"\t\n start \x0b end ",id,id\n1,2,3,4,5\n'
    [batch] = read_all(connector(tmp_path), drop(tmp_path, "h.csv", data))
    assert list(batch.records[0]) == ["id", "column_2", "start end", "id_2", "id_3"]


def test_no_header_and_skip_rows(tmp_path: Path) -> None:
    stream = drop(tmp_path, "n.csv", b"Report 2024\nGenerated by 1C\n1,2\n3,4\n")
    [batch] = read_all(connector(tmp_path, has_header=False, skip_rows=2, delimiter=","), stream)
    assert batch.records == [
        {"column_1": "1", "column_2": "2"},
        {"column_1": "3", "column_2": "4"},
    ]
    assert batch.positions == [1, 2]


def test_discover_lists_ready_files_sorted_by_absolute_name(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", ".hidden.csv", "a.csv.done", "c.txt"):
        drop(tmp_path, name, b"x\n1\n")
    (tmp_path / "inbox" / "sub").mkdir()
    inbox = tmp_path / "inbox"
    names = [s.name for s in connector(tmp_path).discover()]
    assert names == [str(inbox / "a.csv"), str(inbox / "b.csv"), str(inbox / "c.txt")]
    by_glob = [s.name for s in connector(tmp_path, path=str(inbox / "*.csv")).discover()]
    assert by_glob == [str(inbox / "a.csv"), str(inbox / "b.csv")]
    single = connector(tmp_path, path=str(inbox / "b.csv")).discover()
    assert [s.name for s in single] == [str(inbox / "b.csv")]


def test_files_still_being_written_or_unmarked_are_not_ready(tmp_path: Path) -> None:
    fresh = drop(tmp_path, "fresh.csv", b"x\n1\n")
    old = drop(tmp_path, "old.csv", b"x\n1\n")
    past = time.time() - 60
    os.utime(old, (past, past))
    conn = connector(tmp_path, settle_seconds=30)
    assert [s.name for s in conn.discover()] == [old]
    os.utime(fresh, (past, past))
    assert [s.name for s in conn.discover()] == [fresh, old]
    marked = connector(tmp_path, settle_seconds=30, require_done_marker=True)
    assert marked.discover() == []
    Path(old + ".done").touch()
    assert [s.name for s in marked.discover()] == [old]


def test_check_reports_missing_paths_and_never_raises(tmp_path: Path) -> None:
    assert not connector(tmp_path).check().ok  # no inbox yet
    assert not connector(tmp_path, path=str(tmp_path / "nope" / "*.csv")).check().ok
    assert not connector(tmp_path, path=str(tmp_path / "missing.csv")).check().ok
    drop(tmp_path, "a.csv", b"x\n1\n")
    result = connector(tmp_path, path=str(tmp_path / "inbox" / "*.csv")).check()
    assert result.ok
    assert "1 file" in result.message


def test_read_refuses_files_outside_the_configured_path(tmp_path: Path) -> None:
    drop(tmp_path, "a.csv", b"x\n1\n")
    outside = tmp_path / "secret.csv"
    outside.write_bytes(b"x\n1\n")
    conn = connector(tmp_path, path=str(tmp_path / "inbox" / "*.csv"))
    for stream in (str(outside), str(tmp_path / "inbox" / ".." / "secret.csv"), "a.csv"):
        with pytest.raises(ConfigError):
            conn.read(stream, None)
    with pytest.raises(ConfigError, match="gone"):
        conn.read(str(tmp_path / "inbox" / "b.csv"), None)


def test_200k_rows_stream_in_constant_memory(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "email", "city", "amount"])
        w.writerows(
            [i, "Иван Петров", f"u{i}@example.com", "Москва", i * 0.5] for i in range(200_000)
        )
    conn = connector(tmp_path)
    proc = psutil.Process()
    gc.collect()
    baseline = proc.memory_info().rss
    peak = baseline
    count = 0
    for batch in conn.read(str(path), None):
        count += len(batch.records)
        if batch.positions[0] % 20_000 == 1:
            peak = max(peak, proc.memory_info().rss)
    assert count == 200_000
    assert batch.cursor["row"] == 200_000
    assert peak - baseline < 50 * 1024 * 1024
