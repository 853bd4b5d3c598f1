"""``bench erp``: the ERP and database connectors beside their raw parsers, in one run.

* CommerceML: a 200,000-product ``import.xml`` read by the ``commerceml`` connector beside the raw
  hardened lxml ``iterparse`` of the same file (goal: ≥ 0.3 of raw), ``bench/erp_commerceml.py``;
* ODBC: 1,000,000 rows read from SQLite through the ``odbc`` connector beside raw pyodbc
  ``fetchmany`` (goal: ≥ 0.5 of raw), ``bench/erp_odbc.py``.
"""

from __future__ import annotations

from typing import Any


def run(
    *, products: int, rows: int, parts: list[str], figures: dict[str, Any] | None = None
) -> int:
    """Run the wanted parts (``commerceml``, ``odbc``); each prints its own figures, which
    ``figures``, when given, receives by part name."""
    out: dict[str, Any] = {} if figures is None else figures
    if "commerceml" in parts:
        from bench.erp_commerceml import run as run_commerceml

        out["commerceml"] = run_commerceml(products=products)
    if "odbc" in parts:
        from bench.erp_odbc import run as run_odbc

        out["odbc"] = run_odbc(rows=rows)
    return 0
