"""``junction ingest FILE --mapping commerceml.*``: the spec's reader picks the connector.

Generated files with the traps of the real ones: UTF-8 with a BOM and the 2.07 namespace,
windows-1251 orders without a namespace, decimal commas and NBSP grouping in prices.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from junction.core.errors import ConfigError
from junction.pipeline.ingest import ingest_file
from tests.unit.connectors.test_commerceml_read import (
    BOM,
    NS,
    OFFERS,
    ORDERS,
    PRICES_209,
    import_doc,
)


def ingest(path: Path, mapping: str) -> tuple[list[dict], list[str]]:
    out = io.BytesIO()
    result = ingest_file(path, mapping, out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert result.ok == len(rows)
    return rows, result.errors


def test_import_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "import.xml"
    path.write_bytes(BOM + import_doc(4).encode())
    rows, errors = ingest(path, "commerceml.import")
    assert errors == []
    assert [r["external_id"] for r in rows] == ["prod-1", "prod-2", "prod-3", "prod-4"]
    assert rows[0]["sku"] == "SKU-1"
    assert rows[0]["name"] == "Сапоги женские №1"
    assert rows[0]["unit"] == "PCE"
    assert rows[0]["category"] == "Сапоги"


def test_offers_prices_with_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "offers.xml"
    path.write_bytes(BOM + OFFERS.format(ns=NS).encode())
    rows, errors = ingest(path, "commerceml.offers")
    assert errors == []
    assert [(r["external_id"], r["price"], r["currency"], r["stock"]) for r in rows] == [
        ("prod-1#char-38", "1719.50", "RUB", "5.5"),
        ("prod-2", "99", "RUB", "7"),
    ]
    split = tmp_path / "prices___1.xml"
    split.write_bytes(BOM + PRICES_209.format(ns=NS).encode())
    rows, errors = ingest(split, "commerceml.offers")
    assert (errors, rows[0]["price"]) == ([], "181.9")


def test_orders_cp1251(tmp_path: Path) -> None:
    path = tmp_path / "orders.xml"
    path.write_bytes(ORDERS.encode("cp1251"))
    rows, errors = ingest(path, "commerceml.orders")
    assert errors == []
    first = rows[0]
    assert (first["external_id"], first["total"], first["currency"]) == ("132", "1231.74", "RUB")
    assert first["account_external_id"] == "38#ivan#Иван Петров"
    assert [ln["amount"] for ln in first["lines"]] == ["300", "931.74"]


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "offers.xml"
    path.write_bytes(OFFERS.format(ns="").encode())
    with pytest.raises(ConfigError, match="offers document, not import"):
        ingest(path, "commerceml.import")
