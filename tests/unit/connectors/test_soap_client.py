"""The SOAP base: local-only WSDL, endpoint override, auth, safe answers and error translation."""

from __future__ import annotations

import logging
import socket
from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from connectors.soap.client import SoapClient
from connectors.soap.config import SoapConnection
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)
from tests.fakes.server import serve_app
from tests.fakes.soap_1c import ONEC_PATH, WSDL_DIR, OneCExchange, counterparty

WSDL = WSDL_DIR / "hub_exchange_1c.wsdl"


@pytest.fixture
def fake():
    fake = OneCExchange()
    fake.counterparties = [counterparty(i, datetime(2026, 3, 1, 10, i)) for i in range(3)]
    return fake


@pytest.fixture
def url(fake):
    with serve_app(fake.app()) as base:
        yield base


def _client(url: str, fake: OneCExchange, **options) -> SoapClient:
    conn = SoapConnection.model_validate(
        {
            "path": str(WSDL),
            "address": url + ONEC_PATH,
            "username": fake.username,
            "password": fake.password,
            "timeout_s": 5,
            **options,
        }
    )
    return SoapClient(conn)


def test_cyrillic_basic_auth_and_the_address_override(url, fake):
    client = _client(url, fake)
    try:
        # the WSDL names srv-1c-prod.corp.local: only the override reaches the fake
        assert client.call("Ping", {}) == "ok"
        rows = client.call("GetCounterparties", {"ChangedSince": None, "Limit": 2})
    finally:
        client.close()
        client.close()
    assert [r["Code"] for r in rows] == ["000000000", "000000001"]
    assert rows[1]["ChangedAt"] == "2026-03-01T10:01:00"
    assert rows[1]["Balance"] == "100.50"  # exact text, never a float
    headers = fake.seen_headers[-1]
    assert (
        headers["soapaction"]
        == '"http://www.example.org/hub/exchange#HubExchange:GetCounterparties"'
    )
    assert headers["content-type"].startswith("text/xml")


def test_a_wrong_password_is_an_auth_error(url, fake):
    client = _client(url, fake, password="неверный")
    with pytest.raises(AuthError):
        client.call("Ping", {})


def test_soap_12_binding(url, fake):
    client = _client(url, fake, soap_version="1.2")
    assert client.call("Ping", {}) == "ok"
    content_type = fake.seen_headers[-1]["content-type"]
    assert content_type.startswith("application/soap+xml")
    assert 'action="http://www.example.org/hub/exchange#HubExchange:Ping"' in content_type


def test_ws_security_username_token(url, fake, caplog):
    fake.require_wsse = True
    caplog.set_level(logging.DEBUG)
    assert _client(url, fake, auth="ws_security").call("Ping", {}) == "ok"
    with pytest.raises(AuthError):
        _client(url, fake).call("Ping", {})  # Basic alone is refused by this service
    assert fake.password not in caplog.text  # zeep's envelope logging is silenced


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_client_fault_is_fatal_and_server_fault_unavailable(url, fake, version):
    client = _client(url, fake, soap_version=version)
    with pytest.raises(FatalError) as info:
        client.call("GetCounterparties", {"ChangedSince": None, "Limit": 1, "Kind": "invalid"})
    assert "Неизвестный вид" in (info.value.details or "")
    fake.faults.fail_next("server_error", 1)
    with pytest.raises(UnavailableError) as server:
        client.call("Ping", {})
    assert "недоступен" in (server.value.details or "")


def test_http_429_carries_retry_after(url, fake):
    fake.faults.fail_next("rate_limit", 1)
    with pytest.raises(RateLimitedError) as info:
        _client(url, fake).call("Ping", {})
    assert info.value.retry_after == fake.faults.retry_after_s


def test_a_slow_answer_is_a_timeout(url, fake):
    fake.faults.delay_s = 1.5
    fake.faults.fail_next("timeout", 1)
    with pytest.raises(RemoteTimeoutError):
        _client(url, fake, timeout_s=0.3).call("Ping", {})


def test_a_refused_connection_is_unavailable(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnavailableError):
        _client(f"http://127.0.0.1:{port}", fake).call("Ping", {})


@pytest.mark.parametrize(
    ("inject", "code"), [("doctype", "dtd_forbidden"), ("entity", "dtd_forbidden")]
)
def test_a_doctype_or_entity_in_an_answer_is_refused(url, fake, inject, code):
    fake.inject = inject
    with pytest.raises(FatalError) as info:
        _client(url, fake).call("Ping", {})
    assert info.value.code in (code, "entities_forbidden")


def test_an_external_entity_in_an_answer_is_refused_without_a_fetch(url, fake, sinkhole):
    port = sinkhole.getsockname()[1]
    fake.inject = f'<!DOCTYPE soap:Envelope [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/secret">]>'
    with pytest.raises(FatalError) as info:
        _client(url, fake).call("Ping", {})
    assert info.value.code == "dtd_forbidden"
    _assert_untouched(sinkhole)


def test_unknown_operation_and_parameters_are_config_errors(url, fake):
    client = _client(url, fake)
    with pytest.raises(ConfigError, match="no operation"):
        client.call("Nope", {})
    with pytest.raises(ConfigError, match="parameters"):
        client.call("Ping", {"Extra": 1})


def test_a_file_url_wsdl_and_a_non_xml_answer(url, fake):
    client = _client(url, fake, path=WSDL.as_uri())
    assert client.call("Ping", {}) == "ok"
    html = _client(url, fake, address=url + "/not-soap")
    with pytest.raises(FatalError):  # 404 from the fake app: another 4xx
        html.call("Ping", {})


def test_a_200_login_page_is_not_a_soap_answer(fake):
    app = FastAPI()

    @app.post(ONEC_PATH)
    async def login() -> HTMLResponse:
        return HTMLResponse("<html><body>Please log in<br></body></html>")

    with serve_app(app) as base, pytest.raises(FatalError, match="not XML"):
        _client(base, fake).call("Ping", {})


def test_a_missing_wsdl_is_a_config_error(tmp_path, fake):
    client = _client("http://127.0.0.1:9", fake, path=str(tmp_path / "none.wsdl"))
    with pytest.raises(ConfigError, match="cannot be read"):
        client.operations()


@pytest.fixture
def sinkhole():
    """A listening socket that must never see a connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        s.settimeout(0.3)
        yield s


def _assert_untouched(sinkhole: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        sinkhole.accept()


def test_a_wsdl_importing_a_remote_schema_is_refused_without_a_connection(tmp_path, fake, sinkhole):
    port = sinkhole.getsockname()[1]
    text = WSDL.read_text(encoding="utf-8").replace(
        'elementFormDefault="qualified">',
        'elementFormDefault="qualified">'
        f'<xs:import namespace="urn:evil" schemaLocation="http://127.0.0.1:{port}/evil.xsd"/>',
        1,
    )
    path = tmp_path / "evil.wsdl"
    path.write_text(text, encoding="utf-8")
    client = _client("http://127.0.0.1:9", fake, path=str(path))
    with pytest.raises(ConfigError, match="remote document") as info:
        client.operations()
    assert f"127.0.0.1:{port}" in (info.value.details or "")
    _assert_untouched(sinkhole)


def test_a_wsdl_import_of_a_remote_wsdl_is_refused_without_a_connection(tmp_path, fake, sinkhole):
    port = sinkhole.getsockname()[1]
    path = tmp_path / "outer.wsdl"
    path.write_text(
        '<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:outer">'
        f'<import namespace="urn:inner" location="http://127.0.0.1:{port}/inner.wsdl"/>'
        "</definitions>",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="remote document"):
        _client("http://127.0.0.1:9", fake, path=str(path)).operations()
    _assert_untouched(sinkhole)


def test_a_local_import_next_to_the_wsdl_is_allowed(tmp_path, fake, url):
    xsd = tmp_path / "extra.xsd"
    xsd.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:extra">'
        '<xs:element name="Note" type="xs:string"/></xs:schema>',
        encoding="utf-8",
    )
    text = WSDL.read_text(encoding="utf-8").replace(
        'elementFormDefault="qualified">',
        'elementFormDefault="qualified">'
        '<xs:import namespace="urn:extra" schemaLocation="extra.xsd"/>',
        1,
    )
    path = tmp_path / "with_local.wsdl"
    path.write_text(text, encoding="utf-8")
    assert _client(url, fake, path=str(path)).call("Ping", {}) == "ok"


def test_config_requires_credentials_for_auth():
    with pytest.raises(ValueError, match="username and password"):
        SoapConnection.model_validate({"path": "x.wsdl", "address": "http://h/x"})
    with pytest.raises(ValueError, match="http"):
        SoapConnection.model_validate({"path": "x.wsdl", "address": "ftp://h/x", "auth": "none"})


def test_two_bindings_of_one_version_need_a_name(tmp_path, fake):
    text = WSDL.read_text(encoding="utf-8")
    extra = text[
        text.index('<binding name="HubExchangeSoapBinding"') : text.index(
            '<binding name="HubExchangeSoap12Binding"'
        )
    ].replace("HubExchangeSoapBinding", "HubExchangeSoapBinding2")
    path = tmp_path / "two.wsdl"
    path.write_text(text.replace("<service ", extra + "<service ", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"2 SOAP 1\.1 bindings"):
        _client("http://127.0.0.1:9", fake, path=str(path)).operations()
    ops = _client("http://127.0.0.1:9", fake, path=str(path), binding="HubExchangeSoapBinding2")
    assert "Ping" in ops.operations()
