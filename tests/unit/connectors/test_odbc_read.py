"""The odbc connector on SQLite ODBC: incremental boundaries, resume, types, injection."""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
from pathlib import Path

import orjson
import pytest

from connectors.odbc import OdbcConnector
from connectors.odbc.config import OdbcConfig
from connectors.odbc.connector import version_of
from junction.core.errors import ConfigError
from tests.contract.fixtures.odbc import make_leads_db, sqlite_options


def _conn(**options) -> OdbcConnector:
    return OdbcConnector(OdbcConfig.model_validate(options))


def _keys(conn: OdbcConnector, stream: str, cursor=None) -> list[str]:
    return [k for b in conn.read(stream, cursor) for k in b.keys]


def _exec(db: Path, *statements: str, params=()) -> None:
    con = sqlite3.connect(db)
    with con:
        for s in statements:
            con.execute(s, params)
    con.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "erp.db"
    make_leads_db(path, rows=9)  # three rows at each of 10:00:00, 10:00:01, 10:00:02
    return path


def test_resume_from_each_batch_cursor_reads_exactly_the_rest(db):
    conn = _conn(**sqlite_options(db))
    batches = list(conn.read("leads", None))
    all_keys = [k for b in batches for k in b.keys]
    assert len(all_keys) == 9
    assert [len(b) for b in batches] == [2, 2, 2, 2, 1]
    for i, b in enumerate(batches):
        after = [k for later in batches[i + 1 :] for k in later.keys]
        assert _keys(conn, "leads", b.cursor) == after, f"resume after batch {i}"
    conn.close()


def test_rows_at_the_watermark_and_updates_are_read_after_the_cursor(db):
    conn = _conn(**sqlite_options(db))
    last = list(conn.read("leads", None))[-1].cursor
    assert last["watermark"] == "2026-12-01T10:00:02"
    _exec(
        db,
        # a row committed late with the watermark's own value
        "INSERT INTO leads VALUES ('L90', 'a@b.c', 'Acme', 1, '1.00', '2026-12-01 10:00:02')",
        # a row that changes gets a new version
        "UPDATE leads SET updated_at = '2026-12-01 10:05:00' WHERE id = 'L0'",
        # a row committed late with an older watermark: outside a zero overlap
        "INSERT INTO leads VALUES ('L91', 'a@b.c', 'Acme', 1, '1.00', '2026-12-01 10:00:01')",
    )
    assert _keys(conn, "leads", last) == [
        "L90@2026-12-01T10:00:02.000000Z",
        "L0@2026-12-01T10:05:00.000000Z",
    ]
    conn.close()


def test_the_overlap_catches_rows_committed_late_with_an_older_watermark(db):
    conn = _conn(**sqlite_options(db, overlap_s=5))
    batches = list(conn.read("leads", None))
    _exec(db, "INSERT INTO leads VALUES ('L91', 'a@b.c', 'Acme', 1, '1.00', '2026-12-01 10:00:01')")
    assert _keys(conn, "leads", batches[-1].cursor) == ["L91@2026-12-01T10:00:01.000000Z"]
    # each batch's cursor still resumes exactly: the overlap re-scans, "seen" skips
    for i, b in enumerate(batches[:-1]):
        after = [k for later in batches[i + 1 :] for k in later.keys]
        again = _keys(conn, "leads", b.cursor)
        assert sorted(again) == sorted([*after, "L91@2026-12-01T10:00:01.000000Z"])
    # seen holds only what is inside the overlap
    assert set(batches[-1].cursor["seen"]) == {f"L{i}" for i in range(9)}
    conn.close()


def test_a_row_updated_during_the_read_comes_in_this_read_or_the_next(db):
    # WAL lets a writer commit while the read holds its snapshot (as a server database does)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    conn = _conn(**sqlite_options(db))
    it = conn.read("leads", None)
    first = next(it)
    assert first.keys[0].startswith("L0@")
    _exec(db, "UPDATE leads SET updated_at = '2026-12-01 12:00:00' WHERE id = 'L0'")
    rest = list(it)
    final = rest[-1].cursor if rest else first.cursor
    seen_now = [k for b in rest for k in b.keys]
    later = _keys(conn, "leads", final)
    assert ("L0@2026-12-01T12:00:00.000000Z" in seen_now) != (
        "L0@2026-12-01T12:00:00.000000Z" in later
    )
    conn.close()


def test_integer_watermarks_are_zero_padded_versions(tmp_path):
    path = tmp_path / "v.db"
    _exec(path, "CREATE TABLE doc (id INTEGER PRIMARY KEY, rv INTEGER NOT NULL, note TEXT)")
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO doc VALUES (?, ?, ?)", [(i, 7 + i // 2, "n") for i in range(5)]
        )
    con.close()
    opts = {
        "connection_string": f"Driver=SQLite3;Database={path}",
        "batch_size": 2,
        "tables": {"doc": {"watermark_column": "rv"}},
    }
    conn = _conn(**opts)
    batches = list(conn.read("doc", None))
    assert batches[0].versions == ["00000000000000000007", "00000000000000000007"]
    assert batches[0].keys == ["0@00000000000000000007", "1@00000000000000000007"]
    assert batches[1].cursor["watermark"] == 8
    _exec(path, "INSERT INTO doc VALUES (9, 9, 'late at the watermark')")
    assert _keys(conn, "doc", batches[-1].cursor) == ["9@00000000000000000009"]
    conn.close()


def test_versions_are_fixed_width_and_sort_as_values():
    stamps = [dt.datetime(999, 1, 1), dt.datetime(2026, 1, 1, 0, 0, 0, 5), dt.datetime(2026, 1, 2)]
    assert [version_of(s, "timestamp") for s in stamps] == [
        "0999-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.000005Z",
        "2026-01-02T00:00:00.000000Z",
    ]
    aware = dt.datetime(2026, 1, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert version_of(aware, "timestamp") == "2026-01-01T00:00:00.000000Z"
    assert version_of(dt.date(2026, 3, 4), "date") == "2026-03-04"
    assert sorted(version_of(n, "integer") for n in (10, 9, 100)) == [
        version_of(n, "integer") for n in (9, 10, 100)
    ]


def test_types_are_kept_and_records_serialize_as_json(tmp_path):
    path = tmp_path / "t.db"
    _exec(
        path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, d DATE, ts TIMESTAMP, b BLOB, amt DECIMAL(9,2),"
        " name TEXT)",
    )
    _exec(
        path,
        "INSERT INTO t VALUES (1, '2026-02-03', '2026-02-03 04:05:06.123456', x'00ff', '12.30',"
        " 'Ёлка')",
    )
    opts = {"connection_string": f"Driver=SQLite3;Database={path}", "tables": {"t": {}}}
    (batch,) = list(_conn(**opts).read("t", None))
    rec = batch.records[0]
    assert rec["d"] == dt.date(2026, 2, 3)
    assert rec["ts"] == dt.datetime(2026, 2, 3, 4, 5, 6, 123456)
    assert rec["b"] == base64.b64encode(b"\x00\xff").decode()
    assert rec["name"] == "Ёлка"
    assert batch.keys == ["1"]
    assert batch.versions is None
    assert batch.cursor == {}
    orjson.dumps(rec)  # the pipeline's quarantine payloads need this
    props = _conn(**opts).discover()[0].json_schema["properties"]
    assert props["id"] == {"type": "integer"}
    assert props["ts"] == {"type": "string", "format": "date-time"}
    assert props["b"] == {"type": "string", "contentEncoding": "base64"}
    raw = _conn(**opts, json_safe=False)
    (raw_batch,) = list(raw.read("t", None))
    assert raw_batch.records[0]["b"] == b"\x00\xff"


def test_streams_without_a_watermark_are_read_whole_every_run(db):
    opts = sqlite_options(db)
    opts["tables"] = {"leads": {}}
    conn = _conn(**opts)
    first = _keys(conn, "leads")
    assert first == [f"L{i}" for i in range(9)]
    assert _keys(conn, "leads", {}) == first
    conn.close()


def test_a_query_with_parameters_and_a_watermark(db):
    opts = sqlite_options(db)
    opts["queries"] = {
        "big": {
            "sql": "SELECT id, views, updated_at FROM leads WHERE views >= ? AND company = ?",
            "params": [4, "Acme"],
            "key_columns": ["id"],
            "watermark_column": "updated_at",
        }
    }
    conn = _conn(**opts)
    batches = list(conn.read("big", None))
    assert [k.split("@")[0] for b in batches for k in b.keys] == [f"L{i}" for i in range(4, 9)]
    assert set(batches[0].records[0]) == {"id", "views", "updated_at"}
    assert _keys(conn, "big", batches[-1].cursor) == []
    assert "big" in {s.name for s in conn.discover()}
    conn.close()


@pytest.mark.parametrize(
    "value",
    ["x'); DROP TABLE leads;--", "' OR 1=1 --", '"; DROP TABLE leads; --'],
    ids=["drop", "or-true", "double-quote"],
)
def test_injection_in_values_is_bound_literally(db, value):
    _exec(
        db,
        "INSERT INTO leads VALUES ('evil', ?, 'Acme', 1, '1.00', '2026-12-01 10:00:00')",
        params=(value,),
    )
    opts = sqlite_options(db)
    opts["queries"] = {
        "by_email": {
            "sql": "SELECT id, email FROM leads WHERE email = ?",
            "params": [value],
            "key_columns": ["id"],
        }
    }
    conn = _conn(**opts)
    (batch,) = list(conn.read("by_email", None))
    assert batch.records == [{"id": "evil", "email": value}]
    assert len(_keys(conn, "leads")) == 10  # the table is still there, whole
    conn.close()


@pytest.mark.parametrize(
    "tables",
    [
        {"leads; DROP TABLE keep": {}},
        {'leads" ; DROP TABLE keep; --': {}},
        {"leads": {"key_columns": ["id; DROP TABLE keep"]}},
        {"leads": {"watermark_column": "updated_at) OR 1=1 --"}},
        {"leads": {"key_columns": ['id" FROM leads; DROP TABLE keep; --']}},
    ],
    ids=["table", "quoted-table", "key", "watermark", "quoted-key"],
)
def test_injection_in_identifiers_is_a_config_error(db, tables):
    _exec(db, "CREATE TABLE keep (id INTEGER)")
    opts = sqlite_options(db)
    opts["tables"] = tables
    conn = _conn(**opts)
    result = conn.check()
    assert not result.ok
    assert "not in the database catalog" in result.message
    with pytest.raises(ConfigError):
        list(conn.read(next(iter(tables)), None))
    conn.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM keep").fetchone() == (0,)
    con.close()


def test_identifiers_are_matched_case_insensitively_and_quoted(tmp_path):
    path = tmp_path / "q.db"
    _exec(path, 'CREATE TABLE "Order Lines" ("Line No" INTEGER PRIMARY KEY, "select" TEXT)')
    _exec(path, "INSERT INTO \"Order Lines\" VALUES (1, 'x')")
    opts = {"connection_string": f"Driver=SQLite3;Database={path}", "tables": {"order lines": {}}}
    conn = _conn(**opts)
    (batch,) = list(conn.read("order lines", None))
    assert batch.records == [{"Line No": 1, "select": "x"}]
    info = conn.discover()[0]
    assert info.key_fields == ("Line No",)
    conn.close()


def test_a_table_without_primary_key_needs_key_columns(tmp_path):
    path = tmp_path / "k.db"
    _exec(path, "CREATE TABLE nokey (a INTEGER)")
    conn = _conn(connection_string=f"Driver=SQLite3;Database={path}", tables={"nokey": {}})
    result = conn.check()
    assert not result.ok
    assert "key_columns" in result.message
    conn.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tables": {"t": {}}}, "exactly one of connection_string or dsn"),
        ({"connection_string": "Driver=SQLite3", "dsn": "x", "tables": {"t": {}}}, "exactly one"),
        ({"connection_string": "Driver=SQLite3"}, "at least one table or query"),
        (
            {"connection_string": "Driver=SQLite3", "queries": {"q": {"sql": "SELECT 1"}}},
            "key_columns",
        ),
        (
            {"connection_string": "Driver=SQLite3", "username": "u", "tables": {"t": {}}},
            "go with dsn",
        ),
    ],
    ids=["none", "both", "no-streams", "query-keys", "user-with-cs"],
)
def test_config_is_validated(options, message):
    with pytest.raises(ValueError, match=message):
        OdbcConfig.model_validate(options)


def test_schema_is_accepted_under_its_name():
    cfg = OdbcConfig.model_validate(
        {"dsn": "erp", "username": "u", "password": "p;w}", "schema": "sales", "tables": {"t": {}}}
    )
    assert cfg.db_schema == "sales"
    assert "p;w" not in repr(cfg)
