"""The 1C SOAP connector against the fake 1C service: incremental reads and their cursors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from connectors.soap_1c import Soap1CConfig, Soap1CConnector
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RemoteTimeoutError,
    RetryableError,
)
from tests.contract.fixtures.soap_1c import T0, onec_options
from tests.fakes.server import serve_app
from tests.fakes.soap_1c import OneCExchange, counterparty


@pytest.fixture
def fake():
    fake = OneCExchange()
    fake.counterparties = [counterparty(i, T0 + timedelta(minutes=i // 2)) for i in range(7)]
    return fake


@pytest.fixture
def url(fake):
    with serve_app(fake.app()) as base:
        yield base


def _conn(url, fake, **overrides) -> Soap1CConnector:
    options = {**onec_options(url, fake), **overrides}
    return Soap1CConnector(Soap1CConfig.model_validate(options))


def _keys(batches) -> list[str]:
    return [k for b in batches for k in b.keys]


def test_change_date_reads_in_pages_with_versions(url, fake):
    conn = _conn(url, fake)
    batches = list(conn.read("counterparties", None))
    assert len(_keys(batches)) == 7
    first = batches[0]
    assert first.keys[0] == "5f2b6c1e-0000-11ee-8c90-000000000000@2026-03-01T10:00:00.000000"
    assert first.versions == ["2026-03-01T10:00:00.000000"] * 2
    assert first.records[0]["Description"] == "Фирма Контрагент 0"
    assert first.cursor["since"] == "2026-03-01T10:00:00.000000"
    # every call after the first asks from the watermark, with the stored ids on top of a page
    calls = [p for op, p in fake.calls if op == "GetCounterparties"]
    assert calls[0]["Limit"] == "2"
    assert calls[1]["ChangedSince"] == "2026-03-01T10:00:00"
    assert calls[1]["Limit"] == "4"


def test_a_change_after_the_last_cursor_is_read_again_with_its_new_version(url, fake):
    conn = _conn(url, fake)
    done = list(conn.read("counterparties", None))[-1].cursor
    assert list(conn.read("counterparties", done)) == []
    fake.counterparties[3] = counterparty(3, T0 + timedelta(hours=1), Description="Фирма Новая")
    fake.counterparties.append(counterparty(99, T0 + timedelta(minutes=3)))  # at the watermark
    again = list(conn.read("counterparties", done))
    assert sorted(_keys(again)) == [
        "5f2b6c1e-0000-11ee-8c90-000000000003@2026-03-01T11:00:00.000000",
        "5f2b6c1e-0000-11ee-8c90-000000000099@2026-03-01T10:03:00.000000",
    ]


def test_many_items_sharing_one_change_date_page_through(url, fake):
    fake.counterparties = [counterparty(i, T0) for i in range(9)]
    batches = list(_conn(url, fake, batch_size=2).read("counterparties", None))
    assert len(set(_keys(batches))) == 9


def test_a_timeout_mid_poll_leaves_the_cursor_after_the_last_batch(url, fake):
    conn = _conn(url, fake, timeout_s=0.3)
    committed = None
    fake.faults.delay_s = 1.5
    reading = conn.read("counterparties", committed)
    committed = next(reading).cursor  # the runner commits the first batch and its cursor
    fake.faults.fail_next("timeout", 1)
    with pytest.raises(RemoteTimeoutError):
        next(reading)
    # the next run resumes from the committed cursor: nothing lost, nothing repeated
    rest = list(_conn(url, fake).read("counterparties", committed))
    assert len(_keys(rest)) == 5
    assert committed["since"] == "2026-03-01T10:00:00.000000"


def test_message_numbers_acknowledge_what_was_stored(url, fake):
    fake.messages = [
        [counterparty(1, T0), counterparty(2, T0)],
        [counterparty(2, T0 + timedelta(days=1)), counterparty(3, T0)],
        [counterparty(4, T0)],
    ]
    conn = _conn(url, fake)
    batches = list(conn.read("changes", None))
    assert [b.cursor for b in batches] == [{"message_no": 1}, {"message_no": 2}, {"message_no": 3}]
    assert batches[1].keys == [
        "5f2b6c1e-0000-11ee-8c90-000000000002@00000000000000000002",
        "5f2b6c1e-0000-11ee-8c90-000000000003@00000000000000000002",
    ]
    assert batches[1].versions == ["00000000000000000002"] * 2
    received = [p["ReceivedNo"] for op, p in fake.calls if op == "GetChanges"]
    assert received == ["0", "1", "2", "3"]
    resumed = list(conn.read("changes", {"message_no": 2}))
    assert _keys(resumed) == ["5f2b6c1e-0000-11ee-8c90-000000000004@00000000000000000003"]
    assert list(conn.read("changes", {"message_no": 3})) == []


def test_a_server_fault_mid_exchange_keeps_the_message_number(url, fake):
    fake.messages = [[counterparty(1, T0)], [counterparty(2, T0)]]
    reading = _conn(url, fake).read("changes", None)
    assert next(reading).cursor == {"message_no": 1}
    fake.faults.fail_next("server_error", 1)
    with pytest.raises(RetryableError):
        next(reading)


def test_a_full_read_without_increments(url, fake):
    ops = onec_options(url, fake)["operations"]
    plain = {
        "operation": "GetCounterparties",
        "items": "Counterparty",
        "parameters": {"Kind": "all"},
    }
    conn = _conn(url, fake, operations={**ops, "all": plain}, batch_size=3)
    batches = list(conn.read("all", None))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[0].cursor == {}
    assert batches[0].versions == [None, None, None]
    assert batches[0].keys[0] == "5f2b6c1e-0000-11ee-8c90-000000000000"


def test_an_item_without_a_change_date_is_a_row_error(url, fake):
    fake.counterparties[0]["ChangedAt"] = datetime(1, 1, 1)  # 1C's empty date
    batches = list(_conn(url, fake, batch_size=10).read("counterparties", None))
    assert len(_keys(batches)) == 6
    (err,) = [e for b in batches for e in b.errors]
    assert err.error.code == "parse_error"


def test_check_and_discover(url, fake):
    assert _conn(url, fake).check().ok
    bad = _conn(url, fake, password="нет")
    result = bad.check()
    assert not result.ok
    with pytest.raises(AuthError):
        list(bad.read("counterparties", None))
    missing = _conn(url, fake, check_operation="Missing")
    assert "no operation Missing" in missing.check().message
    streams = {s.name: s for s in _conn(url, fake).discover()}
    assert streams["counterparties"].cursor_field == "ChangedAt"
    assert streams["changes"].key_fields == ("Ref",)


def test_a_client_fault_is_fatal(url, fake):
    ops = onec_options(url, fake)["operations"]
    bad = {**ops["counterparties"], "parameters": {"Kind": "invalid"}}
    with pytest.raises(FatalError):
        list(_conn(url, fake, operations={"counterparties": bad}).read("counterparties", None))


def test_unknown_streams_and_foreign_cursors(url, fake):
    conn = _conn(url, fake)
    with pytest.raises(ConfigError):
        list(conn.read("nope", None))
    with pytest.raises(ConfigError):
        list(conn.read("counterparties", {"sha256": "x", "row": 1}))
    with pytest.raises(ConfigError):
        list(conn.read("changes", {"message_no": "x"}))


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (
            {"operation": "Get", "incremental": "change_date", "change_field": "C"},
            "since_parameter",
        ),
        (
            {"operation": "Get", "incremental": "change_date", "since_parameter": "S"},
            "change_field",
        ),
        ({"operation": "Get Things"}, "not an XML element name"),
        (
            {
                "operation": "Get",
                "incremental": "message_number",
                "since_parameter": "N",
                "start": "x",
            },
            "message number",
        ),
    ],
    ids=["no-since", "no-change-field", "bad-name", "bad-start"],
)
def test_operation_config_is_checked(operation, message):
    with pytest.raises(ValueError, match=message):
        Soap1CConfig.model_validate(
            {
                "path": "x.wsdl",
                "address": "http://h/ws/X.1cws",
                "auth": "none",
                "operations": {"s": operation},
            }
        )
