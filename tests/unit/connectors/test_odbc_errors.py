"""Errors of the odbc connector are typed: translation table, outages, timeouts, credentials."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pyodbc
import pytest

from connectors.odbc import OdbcConnector
from connectors.odbc.client import translate
from connectors.odbc.config import OdbcConfig
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RemoteTimeoutError,
    UnavailableError,
)
from tests.contract.fixtures.odbc import PG_DRIVER, drivers, listening, make_leads_db

MARIADB_DRIVER = "MariaDB Unicode"
SECRET = "pw-6f1d-never-logged"
REQUIRE = os.environ.get("JUNCTION_REQUIRE_PG") == "1"


def _conn(**options) -> OdbcConnector:
    return OdbcConnector(OdbcConfig.model_validate(options))


def _read(conn: OdbcConnector, stream: str) -> None:
    try:
        list(conn.read(stream, None))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pyodbc.InterfaceError("28000", "Access denied for user"), AuthError),
        (pyodbc.Error("08004", "server rejected the connection"), AuthError),
        (pyodbc.OperationalError("08001", 'FATAL: role "x" does not exist'), AuthError),
        (pyodbc.OperationalError("08001", "password authentication failed for user"), AuthError),
        (pyodbc.OperationalError("08001", "Connection refused"), UnavailableError),
        (pyodbc.OperationalError("08S01", "communication link failure"), UnavailableError),
        (pyodbc.OperationalError("08001", "timeout expired"), RemoteTimeoutError),
        (pyodbc.OperationalError("HYT00", "Timeout expired"), RemoteTimeoutError),
        (pyodbc.OperationalError("HYT01", "Connection timeout expired"), RemoteTimeoutError),
        (
            pyodbc.OperationalError("57014", "canceling statement due to statement timeout"),
            RemoteTimeoutError,
        ),
        (pyodbc.Error("40001", "could not serialize access"), UnavailableError),
        (pyodbc.Error("HY000", "[SQLite]database is locked (5)"), UnavailableError),
        (pyodbc.OperationalError("HY000", "something odd"), UnavailableError),
        (pyodbc.InterfaceError("IM002", "Data source name not found"), ConfigError),
        (pyodbc.Error("01000", "Can't open lib 'X' : file not found"), ConfigError),
        (pyodbc.ProgrammingError("42601", "syntax error at or near"), ConfigError),
        (pyodbc.ProgrammingError("42501", "permission denied for table t"), ConfigError),
        (pyodbc.Error("HY000", "[SQLite]no such table: t (1)"), ConfigError),
        (pyodbc.DataError("22003", "numeric value out of range"), FatalError),
        (pyodbc.IntegrityError("23505", "duplicate key"), FatalError),
    ],
    ids=lambda v: v.args[0] if isinstance(v, Exception) else v.__name__,
)
def test_translation_table(exc, expected):
    err = translate(exc, "reading rows")
    assert type(err) is expected
    assert err.context["sqlstate"] == exc.args[0]
    assert exc.args[1] not in err.user_message  # driver text goes to details only
    assert err.details == exc.args[1]


def test_secrets_are_blanked_in_details():
    err = translate(pyodbc.Error("HY000", f"bad PWD={SECRET};"), "connecting", [SECRET])
    assert SECRET not in (err.details or "")
    assert SECRET not in str(err)


def test_a_locked_sqlite_file_is_unavailable_not_a_config_error(tmp_path: Path):
    db = tmp_path / "erp.db"
    make_leads_db(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        opts = {
            "connection_string": f"Driver=SQLite3;Database={db}",
            "timeout_s": 0.5,
            "tables": {"leads": {}},
        }
        conn = _conn(**opts)
        result = conn.check()
        assert not result.ok
        assert "unavailable" in result.message
        with pytest.raises(UnavailableError):
            _read(_conn(**opts), "leads")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len([k for b in _conn(**opts).read("leads", None) for k in b.keys]) == 7


def test_a_missing_driver_or_dsn_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        _read(_conn(connection_string="Driver={No Such Driver};Database=x", tables={"t": {}}), "t")
    assert "driver" in info.value.user_message
    conn = _conn(dsn="junction_no_such_dsn", username="u", password=SECRET, tables={"t": {}})
    result = conn.check()
    assert not result.ok
    assert SECRET not in result.message
    conn.close()


def test_a_bad_configured_query_is_a_config_error(tmp_path: Path):
    db = tmp_path / "erp.db"
    make_leads_db(db)
    opts = {
        "connection_string": f"Driver=SQLite3;Database={db}",
        "queries": {"q": {"sql": "SELEC id FROM leads", "key_columns": ["id"]}},
    }
    with pytest.raises(ConfigError):
        _read(_conn(**opts), "q")


def test_unknown_stream_is_a_config_error(tmp_path: Path):
    db = tmp_path / "erp.db"
    make_leads_db(db)
    with pytest.raises(ConfigError, match="unknown stream"):
        _read(_conn(connection_string=f"Driver=SQLite3;Database={db}", tables={"leads": {}}), "x")


@pytest.fixture
def psqlodbc() -> None:
    if PG_DRIVER not in drivers():
        if REQUIRE:
            pytest.fail("psqlODBC (odbc-postgresql) is required in CI")
        pytest.skip("psqlODBC (Debian odbc-postgresql) is not installed here")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(port: int = 5432, user: str = "postgres", **options) -> dict:
    cs = (
        f"Driver={{{PG_DRIVER}}};Server=127.0.0.1;Port={port};Database=test;UID={user};PWD={SECRET}"
    )
    return {"connection_string": cs, "timeout_s": 1, **options}


def test_postgres_connection_refused_is_unavailable(psqlodbc):
    conn = _conn(**_pg(port=_free_port(), tables={"t": {}}))
    result = conn.check()
    assert not result.ok
    assert SECRET not in result.message
    with pytest.raises(UnavailableError):
        _read(conn, "t")


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def test_postgres_login_timeout_is_a_remote_timeout(psqlodbc, blackhole):
    with pytest.raises(RemoteTimeoutError):
        _read(_conn(**_pg(port=blackhole, tables={"t": {}})), "t")


@pytest.mark.postgres
def test_postgres_statement_timeout_is_a_remote_timeout(psqlodbc, pg_available):
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    opts = _pg(queries={"slow": {"sql": "SELECT 1 AS id, pg_sleep(3) AS x", "key_columns": ["id"]}})
    conn = _conn(**opts)
    with pytest.raises(RemoteTimeoutError):
        _read(conn, "slow")


@pytest.mark.postgres
def test_postgres_unknown_role_is_an_auth_error(psqlodbc, pg_available):
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    conn = _conn(**_pg(user="junction_no_such_role", tables={"t": {}}))
    result = conn.check()
    assert not result.ok
    assert SECRET not in result.message
    with pytest.raises(AuthError) as info:
        _read(conn, "t")
    assert SECRET not in str(info.value)
    assert SECRET not in (info.value.details or "")


def test_mariadb_wrong_password_is_an_auth_error():
    if MARIADB_DRIVER not in drivers():
        pytest.skip("the MariaDB ODBC driver (Debian odbc-mariadb) is not installed here")
    if not listening(3306):
        pytest.skip("no MariaDB server on 127.0.0.1:3306")
    cs = (
        f"Driver={{{MARIADB_DRIVER}}};Server=127.0.0.1;Port=3306;Database=test;"
        f"UID=root;PWD={SECRET}"
    )
    with pytest.raises(AuthError) as info:
        _read(_conn(connection_string=cs, timeout_s=2, tables={"t": {}}), "t")
    assert SECRET not in str(info.value)
