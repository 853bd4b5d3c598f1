"""ERP over ODBC: the odbc connector's incremental read vs raw pyodbc fetchmany, same table.

A SQLite file with ``rows`` invoice lines (built once with the sqlite3 module, then reused from
``bench/data/``) is read through the SQLite3 ODBC driver twice in the same run:

* raw: ``cursor.execute(SELECT ... ORDER BY updated_at, id)`` then ``fetchmany(1000)`` until
  empty, touching nothing but the row count;
* connector: ``OdbcConnector.read`` of the same table with ``updated_at`` as its watermark
  (dict records, ``key@version`` keys, sortable versions, cursors), batches of 1000.

The goal is connector / raw >= 0.5.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pyodbc

from connectors.odbc import OdbcConnector
from connectors.odbc.config import OdbcConfig

DATA = Path(__file__).resolve().parent / "data"
BATCH = 1000
COLUMNS = "id, doc_no, company, amount, qty, issued, updated_at"


def build(rows: int) -> Path:
    """The bench database with ``rows`` rows (reused when it is already there, complete)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"erp_odbc_{rows}.db"
    if path.exists():
        con = sqlite3.connect(path)
        try:
            if con.execute("SELECT COUNT(*) FROM erp_lines").fetchone() == (rows,):
                return path
        except sqlite3.Error:
            pass
        finally:
            con.close()
        path.unlink()
    con = sqlite3.connect(path)
    start = dt.datetime(2026, 1, 1)
    with con:
        con.execute(
            "CREATE TABLE erp_lines (id INTEGER PRIMARY KEY, doc_no TEXT, company TEXT,"
            " amount DECIMAL(12,2), qty INTEGER, issued DATE, updated_at TIMESTAMP NOT NULL)"
        )
        con.executemany(
            "INSERT INTO erp_lines VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"INV-{i // 10:08d}",
                    f"Company {i % 997}",
                    f"{i % 100000}.{i % 100:02d}",
                    i % 50,
                    (start + dt.timedelta(days=i % 365)).date().isoformat(),
                    (start + dt.timedelta(seconds=i // 4)).isoformat(sep=" "),
                )
                for i in range(rows)
            ),
        )
        con.execute("CREATE INDEX erp_lines_wm ON erp_lines (updated_at, id)")
    con.close()
    return path


def _raw(path: Path) -> int:
    con = pyodbc.connect(f"Driver=SQLite3;Database={path}")
    cur = con.cursor()
    cur.execute(f"SELECT {COLUMNS} FROM erp_lines ORDER BY updated_at, id")
    n = 0
    while True:
        rows = cur.fetchmany(BATCH)
        if not rows:
            break
        n += len(rows)
    con.close()
    return n


def _connector(path: Path) -> int:
    cfg = OdbcConfig.model_validate(
        {
            "connection_string": f"Driver=SQLite3;Database={path}",
            "batch_size": BATCH,
            "tables": {"erp_lines": {"watermark_column": "updated_at"}},
        }
    )
    conn = OdbcConnector(cfg)
    n = 0
    try:
        for batch in conn.read("erp_lines", None):
            n += len(batch)
    finally:
        conn.close()
    return n


def _timed(fn: Any, path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fn(path)
    return n, time.perf_counter() - t0


def run(rows: int = 1_000_000) -> dict[str, Any]:
    """Build (or reuse) the database, time both reads, print and return the figures."""
    t0 = time.perf_counter()
    path = build(rows)
    build_s = time.perf_counter() - t0
    raw_n, raw_s = _timed(_raw, path)
    conn_n, conn_s = _timed(_connector, path)
    if raw_n != rows or conn_n != rows:
        raise AssertionError(f"rows lost: raw {raw_n}, connector {conn_n}, expected {rows}")
    raw_rps = raw_n / raw_s
    conn_rps = conn_n / conn_s
    out = {
        "rows": rows,
        "build_s": round(build_s, 2),
        "raw_rows_per_s": round(raw_rps),
        "connector_rows_per_s": round(conn_rps),
        "ratio": round(conn_rps / raw_rps, 3),
        "goal": 0.5,
    }
    print(
        f"erp odbc: {rows} rows; raw pyodbc fetchmany {raw_rps:,.0f} rows/s; "
        f"connector read {conn_rps:,.0f} rows/s; ratio {out['ratio']} (goal >= 0.5)"
    )
    return out


if __name__ == "__main__":
    run()
