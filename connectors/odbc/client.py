"""The only module that imports pyodbc: connections, catalog look-ups, batched reads, errors.

Error translation (``translate``), by SQLSTATE first and the driver's text only where drivers
put everything under one state (psqlODBC reports every login failure as 08001):

=====================================================  =========================
28xxx, 08004, "password authentication failed",         AuthError
"role ... does not exist", "Access denied"
HYT00, HYT01, 57014, "timeout expired"                  RemoteTimeoutError
08xxx, 40001, 40P01, 57P0x, "database is locked",       UnavailableError
"Can't connect", any other ``OperationalError``
IM0xx, "Can't open lib" (no such driver/DSN)            ConfigError
42xxx, "syntax error", "no such table/column"           ConfigError
22xxx, 23xxx, anything else                             FatalError
=====================================================  =========================

User messages never hold driver text (it may echo SQL or server names); the driver text goes
to ``details`` with every configured secret blanked out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyodbc

from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    JunctionError,
    RemoteTimeoutError,
    UnavailableError,
)

_AUTH_TEXT = ("password authentication failed", "does not exist", "access denied", "login failed")
_BUSY_TEXT = ("database is locked", "database table is locked", "can't connect", "connection")
_CONFIG_TEXT = ("syntax error", "no such table", "no such column", "can't open lib")

# python types of result columns, as the connector's watermark kinds
KIND_OF_TYPE: dict[type, str] = {
    dt.datetime: "timestamp",
    dt.date: "date",
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    Decimal: "decimal",
}


def _quote_value(value: str) -> str:
    """An ODBC connection-string value, braced so ';' and '}' in it cannot add attributes."""
    return "{" + value.replace("}", "}}") + "}"


_SQLITE_DRIVER = re.compile(r"(?i)(?:^|;)\s*driver\s*=\s*\{?sqlite")
_TIMEOUT_ATTR = re.compile(r"(?i)(?:^|;)\s*timeout\s*=")


def _sqlite_busy_timeout(connection_string: str, timeout_s: float) -> str:
    """Add ``Timeout`` (ms) to a SQLite driver's string that has none.

    The SQLite ODBC driver waits up to 100 s for a locked file, already while connecting;
    with this a lock held longer than ``timeout_s`` is an UnavailableError instead.
    """
    if _SQLITE_DRIVER.search(connection_string) and not _TIMEOUT_ATTR.search(connection_string):
        return f"{connection_string.rstrip(';')};Timeout={int(timeout_s * 1000)}"
    return connection_string


def translate(exc: pyodbc.Error, action: str, secrets: Sequence[str] = ()) -> JunctionError:
    """The Junction error for a pyodbc error raised while doing ``action``."""
    state = str(exc.args[0]) if exc.args else ""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    low = text.lower()
    ctx = {"sqlstate": state}

    def made(cls: type[JunctionError], what: str) -> JunctionError:
        return cls(f"{action}: {what} (SQLSTATE {state})", details=text, context=ctx)

    login = state.startswith(("08", "28"))
    if state.startswith("28") or state == "08004" or (login and any(t in low for t in _AUTH_TEXT)):
        return made(AuthError, "the database refused the credentials")
    if state in ("HYT00", "HYT01", "57014") or "timeout expired" in low:
        return made(RemoteTimeoutError, "the database did not answer in time")
    if state.startswith("08") or state in ("40001", "40P01", "57P01", "57P02", "57P03"):
        return made(UnavailableError, "the database is unavailable")
    if state.startswith("IM") or "can't open lib" in low:
        return made(ConfigError, "the ODBC driver or data source is not installed")
    if state.startswith("42") or any(t in low for t in _CONFIG_TEXT):
        return made(ConfigError, "the database rejected the statement")
    if any(t in low for t in _BUSY_TEXT) or isinstance(exc, pyodbc.OperationalError):
        return made(UnavailableError, "the database is unavailable")
    return made(FatalError, "the database rejected the request")


@dataclass(frozen=True, slots=True)
class Column:
    """A column as the catalog or a result set describes it."""

    name: str
    kind: str  # one of KIND_OF_TYPE's values, or "other"
    binary: bool = False


class OdbcClient:
    """One pyodbc connection, opened on first use; every pyodbc error leaves typed."""

    def __init__(self, connection_string: str, *, timeout_s: float, secrets: Sequence[str]) -> None:
        """Keep the connection string; nothing is opened yet."""
        self._cs = _sqlite_busy_timeout(connection_string, timeout_s)
        self._timeout_s = timeout_s
        self._secrets = [connection_string, *secrets]
        self._conn: pyodbc.Connection | None = None
        self.quote_char = '"'
        self.dbms = ""

    @staticmethod
    def dsn_string(dsn: str, username: str | None, password: str | None) -> str:
        """A connection string for a DSN, with every value braced."""
        parts = [f"DSN={_quote_value(dsn)}"]
        if username is not None:
            parts.append(f"UID={_quote_value(username)}")
        if password is not None:
            parts.append(f"PWD={_quote_value(password)}")
        return ";".join(parts)

    def _error(self, exc: pyodbc.Error, action: str) -> JunctionError:
        return translate(exc, action, self._secrets)

    def connection(self) -> pyodbc.Connection:
        """The open connection (connecting on first use)."""
        if self._conn is not None:
            return self._conn
        login = max(1, round(self._timeout_s))
        try:
            conn = pyodbc.connect(self._cs, timeout=login, autocommit=False)
        except pyodbc.Error as exc:
            raise self._error(exc, "connecting to the database") from None
        try:
            quote = conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR)
            self.quote_char = quote.strip() if isinstance(quote, str) and quote.strip() else '"'
            self.dbms = str(conn.getinfo(pyodbc.SQL_DBMS_NAME) or "")
        except pyodbc.Error as exc:
            conn.close()
            raise self._error(exc, "reading the driver's info") from None
        self._conn = conn
        self._set_query_timeout(conn)
        return conn

    def _set_query_timeout(self, conn: pyodbc.Connection) -> None:
        seconds = max(1, round(self._timeout_s))
        # psqlODBC refuses the attribute: PostgreSQL gets the server's own setting below
        with contextlib.suppress(pyodbc.Error):
            conn.timeout = seconds
        if self.dbms == "SQLite":
            # the SQLite driver waits 100 s on a locked file by default; wait timeout_s instead
            # (an int from the validated config, not a user string)
            try:
                cur = conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
                cur.close()
            except pyodbc.Error as exc:
                raise self._error(exc, "setting the busy timeout") from None
        if self.dbms.lower().startswith("postgres"):
            try:
                cur = conn.cursor()
                cur.execute("SELECT set_config('statement_timeout', ?, false)", str(seconds * 1000))
                cur.close()
                conn.commit()
            except pyodbc.Error as exc:
                raise self._error(exc, "setting the statement timeout") from None

    def at_least(self, quoted_column: str, kind: str, value: Any) -> tuple[str, Any]:
        """A ``column >= ?`` predicate and its parameter for a watermark of ``kind``.

        SQLite keeps timestamps as text and compares them as text, so '10:00:00' sorts before
        the driver's bound '10:00:00.000': there both sides go through ``julianday`` (ms).
        """
        if self.dbms == "SQLite" and kind in ("timestamp", "date"):
            text = value.isoformat(sep=" ") if kind == "timestamp" else value.isoformat()
            return f"julianday({quoted_column}) >= julianday(?)", text
        return f"{quoted_column} >= ?", value

    def quote(self, identifier: str) -> str:
        """``identifier`` quoted with the driver's quote character (callers validate it)."""
        q = self.quote_char
        return q + identifier.replace(q, q + q) + q

    def table_names(self, schema: str | None) -> list[str]:
        """Tables and views in ``schema`` (the driver's default when None), from the catalog."""
        conn = self.connection()
        try:
            cur = conn.cursor()
            if self.dbms == "SQLite":
                # a locked SQLite file answers the catalog call with no tables, not an error
                cur.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            names = [
                str(r.table_name)
                for r in cur.tables(schema=schema)
                if str(r.table_type).upper() in ("TABLE", "VIEW", "SYNONYM")
            ]
            cur.close()
        except pyodbc.Error as exc:
            raise self._error(exc, "listing tables") from None
        return names

    def primary_key(self, table: str, schema: str | None) -> list[str]:
        """The primary key columns of ``table`` in key order (empty if none or unsupported)."""
        conn = self.connection()
        try:
            cur = conn.cursor()
            rows = sorted(cur.primaryKeys(table, schema=schema), key=lambda r: int(r[4] or 0))
            cur.close()
        except pyodbc.Error:
            return []
        return [str(r[3]) for r in rows]

    def describe(self, sql: str, params: Sequence[Any]) -> list[Column]:
        """The result columns of ``sql`` (run with a false filter, so no rows are read)."""
        conn = self.connection()
        try:
            cur = conn.cursor()
            cur.execute(sql, *params) if params else cur.execute(sql)
            desc = cur.description or ()
            cur.close()
            conn.rollback()
        except pyodbc.Error as exc:
            raise self._error(exc, "describing a stream") from None
        return [
            Column(
                str(d[0]),
                KIND_OF_TYPE.get(d[1], "other"),
                binary=d[1] in (bytes, bytearray),
            )
            for d in desc
        ]

    def batches(self, sql: str, params: Sequence[Any], size: int) -> Iterator[list[Any]]:
        """Rows of ``sql`` in fetchmany batches of ``size``; the read ends with a rollback."""
        conn = self.connection()
        try:
            cur = conn.cursor()
            cur.arraysize = size
            cur.execute(sql, *params) if params else cur.execute(sql)
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    break
                yield rows
            cur.close()
            conn.rollback()
        except pyodbc.Error as exc:
            raise self._error(exc, "reading rows") from None

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except pyodbc.Error:
                # the connection is already gone; nothing else to release
                return
