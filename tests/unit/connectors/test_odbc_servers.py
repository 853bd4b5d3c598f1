"""The odbc connector against real servers: PostgreSQL (psqlODBC) and MariaDB (MariaDB ODBC)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pyodbc
import pytest

from connectors.odbc import OdbcConnector
from connectors.odbc.config import OdbcConfig
from junction.core.errors import ConfigError
from tests.contract.fixtures.odbc import PG_DRIVER, drivers, listening

MARIADB_DRIVER = "MariaDB Unicode"
REQUIRE = os.environ.get("JUNCTION_REQUIRE_PG") == "1"
PG_CS = f"Driver={{{PG_DRIVER}}};Server=127.0.0.1;Port=5432;Database=test;UID=postgres"
MY_CS = f"Driver={{{MARIADB_DRIVER}}};Server=127.0.0.1;Port=3306;Database=test;UID=root"
ROWS = [
    (i, Decimal(f"{i}.{i % 10}0"), dt.date(2026, 1, 1 + i), dt.datetime(2026, 12, 1, 10, 0, i // 3))
    for i in range(7)
]


def _conn(**options) -> OdbcConnector:
    return OdbcConnector(OdbcConfig.model_validate({"batch_size": 2, "overlap_s": 0, **options}))


def _create(cur, table: str) -> None:
    cur.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), issued DATE,"
        " updated_at TIMESTAMP NOT NULL, note VARCHAR(100))"
    )
    cur.executemany(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",
        [(*r, "x'); DROP TABLE invoices;--") for r in ROWS],
    )


@pytest.fixture
def pg_schema(pg_available: bool) -> Iterator[str]:
    if PG_DRIVER not in drivers():
        if REQUIRE:
            pytest.fail("psqlODBC (odbc-postgresql) is required in CI")
        pytest.skip("psqlODBC (Debian odbc-postgresql) is not installed here")
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    schema = f"jt_odbc_{uuid.uuid4().hex[:10]}"
    con = pyodbc.connect(PG_CS, autocommit=True)
    cur = con.cursor()
    cur.execute(f'CREATE SCHEMA "{schema}"')
    _create(cur, f'"{schema}".invoices')
    yield schema
    cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    con.close()


def _check_incremental(conn: OdbcConnector) -> None:
    batches = list(conn.read("invoices", None))
    keys = [k for b in batches for k in b.keys]
    assert keys[0] == "0@2026-12-01T10:00:00.000000Z"
    assert len(keys) == 7
    for i, b in enumerate(batches):
        after = [k for later in batches[i + 1 :] for k in later.keys]
        assert [k for r in conn.read("invoices", b.cursor) for k in r.keys] == after
    rec = batches[0].records[1]
    assert rec["issued"] == dt.date(2026, 1, 2)
    assert rec["updated_at"] == dt.datetime(2026, 12, 1, 10, 0, 0)
    assert rec["note"] == "x'); DROP TABLE invoices;--"


@pytest.mark.postgres
@pytest.mark.parametrize("declare_fetch", [False, True], ids=["buffered", "declare-fetch"])
def test_postgres_incremental_read_and_decimals(pg_schema, declare_fetch):
    cs = PG_CS + (";UseDeclareFetch=1;Fetch=2" if declare_fetch else "")
    tables = {"invoices": {"watermark_column": "updated_at"}}
    conn = _conn(connection_string=cs, schema=pg_schema, tables=tables)
    assert conn.check().ok
    _check_incremental(conn)
    # exact decimals: text by default (JSON-safe), Decimal when asked
    first = next(iter(conn.read("invoices", None))).records[1]
    assert first["amount"] == "1.10"
    conn.close()
    raw = _conn(connection_string=cs, schema=pg_schema, tables=tables, json_safe=False)
    rec = next(iter(raw.read("invoices", None))).records[1]
    assert rec["amount"] == Decimal("1.10")
    assert isinstance(rec["amount"], Decimal)
    raw.close()


@pytest.mark.postgres
def test_postgres_identifiers_from_the_catalog_only(pg_schema):
    bad = _conn(
        connection_string=PG_CS,
        schema=pg_schema,
        tables={'invoices"; DROP SCHEMA public CASCADE; --': {}},
    )
    with pytest.raises(ConfigError, match="not in the database catalog"):
        list(bad.read('invoices"; DROP SCHEMA public CASCADE; --', None))
    bad.close()
    other_schema = _conn(connection_string=PG_CS, schema="public", tables={"invoices": {}})
    assert not other_schema.check().ok  # the table is in pg_schema, not in public
    other_schema.close()


@pytest.mark.postgres
def test_postgres_query_with_parameters(pg_schema):
    sql = f'SELECT id, amount, updated_at FROM "{pg_schema}".invoices WHERE amount >= ?'
    queries = {
        "big": {
            "sql": sql,
            "params": ["3.00"],
            "key_columns": ["id"],
            "watermark_column": "updated_at",
        }
    }
    conn = _conn(connection_string=PG_CS, queries=queries)
    ids = [r["id"] for b in conn.read("big", None) for r in b.records]
    assert ids == [3, 4, 5, 6]
    conn.close()


@pytest.fixture
def mariadb_table() -> Iterator[str]:
    if MARIADB_DRIVER not in drivers():
        pytest.skip("the MariaDB ODBC driver (Debian odbc-mariadb) is not installed here")
    if not listening(3306):
        pytest.skip("no MariaDB server on 127.0.0.1:3306")
    table = f"jt_odbc_{uuid.uuid4().hex[:10]}"
    con = pyodbc.connect(MY_CS, autocommit=True)
    cur = con.cursor()
    _create(cur, table)
    yield table
    cur.execute(f"DROP TABLE {table}")
    con.close()


def test_mariadb_incremental_read_and_decimals(mariadb_table):
    conn = _conn(
        connection_string=MY_CS,
        json_safe=False,
        tables={mariadb_table: {"watermark_column": "updated_at"}},
        queries={
            "invoices": {
                "sql": f"SELECT * FROM {mariadb_table}",
                "key_columns": ["id"],
                "watermark_column": "updated_at",
            }
        },
    )
    assert conn.check().ok
    _check_incremental(conn)
    rec = next(iter(conn.read(mariadb_table, None))).records[1]
    assert rec["amount"] == Decimal("1.10")
    conn.close()
