"""The SAP RFC-over-SOAP connector against the fake SOAMANAGER service."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from connectors.sap import SapConfig, SapConnector
from connectors.sap.connector import abap_parameters, table_rows
from junction.core.errors import AuthError, ConfigError, FatalError, RemoteTimeoutError
from tests.contract.fixtures.sap import sap_options
from tests.fakes.sap_rfc import SapOrders, order_item
from tests.fakes.server import serve_app

D0 = date(2026, 3, 1)


@pytest.fixture
def fake():
    fake = SapOrders()
    fake.rows = [order_item(i, D0 + timedelta(days=i // 3), time(8, i)) for i in range(7)]
    return fake


@pytest.fixture
def url(fake):
    with serve_app(fake.app()) as base:
        yield base


def _conn(url, fake, **overrides) -> SapConnector:
    return SapConnector(SapConfig.model_validate({**sap_options(url, fake), **overrides}))


def _function(url, fake, **changes) -> dict:
    fn = sap_options(url, fake)["functions"]["order_items"]
    return {"order_items": {**fn, **changes}}


def test_table_rows_are_flat_records_with_sap_values_kept(url, fake):
    batches = list(_conn(url, fake, batch_size=10).read("order_items", None))
    (batch,) = batches
    row = batch.records[0]
    assert row == {
        "VBELN": "0000000001",  # ALPHA leading zeros stay: mappings strip them
        "POSNR": "000010",
        "KUNNR": "0000100042",
        "MATNR": "000000000000001000",
        "ARKTX": "Material 0",
        "KWMENG": "1.000",
        "VRKME": "ST",
        "NETWR": "12.50",
        "WAERK": "EUR",
        "ERDAT": "2026-03-01",
        "AEDAT": "2026-03-01",
        "AEZET": "08:00:00",
    }
    assert batch.keys[0] == "0000000001/000010@2026-03-01T08:00:00.000000"
    assert batch.versions[0] == "2026-03-01T08:00:00.000000"
    assert batch.provenance == {
        "connector": "sap",
        "function": "Z_SD_GET_ORDERS",
        "table": "ET_ORDERS",
    }


def test_the_endpoint_carries_sap_client_and_a_wrong_client_cannot_log_on(url, fake):
    conn = _conn(url, fake)
    assert conn.config.endpoint.endswith("?sap-client=100")
    assert conn.check().ok
    other = _conn(url, fake, client="200")
    assert not other.check().ok
    with pytest.raises(AuthError):
        list(other.read("order_items", None))


def test_incremental_by_change_date_rereads_the_watermark_day_without_repeats(url, fake):
    conn = _conn(url, fake)
    batches = list(conn.read("order_items", None))
    done = batches[-1].cursor
    assert done["since"] == "2026-03-03T08:06:00.000000"
    assert list(conn.read("order_items", done)) == []
    # the function filters by day: the whole watermark day comes back, and only news are read
    fake.rows.append(order_item(20, D0 + timedelta(days=2), time(9, 0)))
    fake.rows.append(order_item(21, D0 + timedelta(days=2), time(7, 0)))  # older than the mark
    again = list(conn.read("order_items", done))
    assert [k for b in again for k in b.keys] == ["0000000011/000010@2026-03-03T09:00:00.000000"]
    assert fake.calls[-1][1]["IV_CHANGED_SINCE"] == "2026-03-03"


def test_input_tables_go_as_items(url, fake):
    status = [{"SIGN": "I", "OPTION": "EQ", "LOW": x, "HIGH": ""} for x in "AB"]
    functions = _function(url, fake, parameters={"IV_VKORG": "1000", "IT_STATUS": status})
    list(_conn(url, fake, functions=functions).read("order_items", None))
    sent = fake.calls[-1][1]["IT_STATUS"]["item"]
    assert [r["LOW"] for r in sent] == ["A", "B"]


def test_an_error_message_in_the_return_table_fails_the_call(url, fake):
    functions = _function(url, fake, parameters={"IV_VKORG": "9999"})
    with pytest.raises(FatalError, match="returned an error message") as info:
        list(_conn(url, fake, functions=functions).read("order_items", None))
    assert "9999" in (info.value.details or "")


def test_a_full_read_and_date8_format(url, fake):
    functions = _function(url, fake, incremental="none", since_parameter=None, change_field=None)
    (batch,) = list(_conn(url, fake, functions=functions, batch_size=50).read("order_items", None))
    assert len(batch) == 7
    assert batch.versions == [None] * 7
    assert batch.keys[0] == "0000000001/000010"
    assert abap_parameters({"A": "1", "T": [{"X": 1}]}) == {"A": "1", "T": {"item": [{"X": 1}]}}
    assert table_rows({"item": {"X": 1}}) == [{"X": 1}]
    assert table_rows(None) == []


def test_soap_12_and_timeouts(url, fake):
    assert _conn(url, fake, soap_version="1.2").check().ok
    fake.faults.delay_s = 1.5
    fake.faults.fail_next("timeout", 1)
    with pytest.raises(RemoteTimeoutError):
        list(_conn(url, fake, timeout_s=0.3).read("order_items", None))


def test_a_doctype_in_the_answer_is_refused(url, fake):
    fake.inject = "doctype"
    with pytest.raises(FatalError) as info:
        list(_conn(url, fake).read("order_items", None))
    assert info.value.code == "dtd_forbidden"


def test_rows_without_key_or_date_are_row_errors(url, fake):
    fake.rows[0]["AEDAT"] = None
    fake.rows[0]["AEZET"] = None
    batches = list(_conn(url, fake, batch_size=50).read("order_items", None))
    assert sum(len(b) for b in batches) == 6
    (err,) = [e for b in batches for e in b.errors]
    assert err.error.code == "parse_error"


def test_config_checks(url, fake):
    with pytest.raises(ConfigError):
        list(_conn(url, fake).read("nope", None))
    with pytest.raises(ValueError, match="since_parameter and change_field"):
        _conn(url, fake, functions=_function(url, fake, since_parameter=None))
    with pytest.raises(ValueError, match="ABAP name"):
        _conn(url, fake, functions=_function(url, fake, table="ET ORDERS"))
    missing = _conn(url, fake, functions=_function(url, fake, function="Z_MISSING"))
    assert "no function Z_MISSING" in missing.check().message
