"""HubSpot auth and error translation, through the real SDK against the local fake portal."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from connectors.hubspot import HubSpotConfig, HubSpotConnection, HubSpotConnector
from connectors.hubspot.client import REFRESH_MARGIN_S, HubSpotClient, retry_after_of
from junction.core.errors import (
    AuthError,
    FatalError,
    RateLimitedError,
    RemoteTimeoutError,
    UnavailableError,
)
from tests.fakes.hubspot import PRIVATE_TOKEN, HubSpotFake
from tests.fakes.server import Faults

CLIENT_ID = "8b1c0f2e-0000-4000-8000-000000000001"
CLIENT_SECRET = "cs-7d3f9a1b-secret-value"
REFRESH = "na1-rt-6c2e9b4d-refresh-value"
T0 = 1_772_355_600_000


@pytest.fixture
def fake() -> HubSpotFake:
    f = HubSpotFake(faults=Faults(retry_after_s=7.0, delay_s=0.6))
    f.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH)
    f.put("contacts", updated=T0, email="a@x.io")
    return f


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _oauth(url: str, **extra: Any) -> HubSpotConnection:
    return HubSpotConnection(
        base_url=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH,
        timeout_s=5,
        **extra,
    )


def _list(client: HubSpotClient) -> dict[str, Any]:
    return client.list_page("contacts", limit=10, after=None, properties=["email"])


def test_private_app_token_is_sent_as_bearer(fake, url):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    body = _list(client)
    assert body["results"][0]["properties"]["email"] == "a@x.io"
    assert fake.bearer_seen == [PRIVATE_TOKEN]
    assert fake.token_grants == 0
    client.close()


def test_oauth_obtains_a_token_then_reuses_it(fake, url):
    client = HubSpotClient(_oauth(url), clock=Clock())
    _list(client)
    _list(client)
    assert fake.token_grants == 1
    assert client.token_refreshes == 1
    assert fake.calls.count(("POST", "/oauth/v1/token")) == 1
    assert fake.bearer_seen[0] == fake.bearer_seen[1] != ""
    client.close()


def test_oauth_token_is_refreshed_before_it_expires(fake, url):
    clock = Clock()
    client = HubSpotClient(_oauth(url), clock=clock)
    _list(client)
    first = fake.bearer_seen[-1]
    clock.now += fake.token_ttl_s - REFRESH_MARGIN_S - 1  # still fresh
    _list(client)
    assert fake.token_grants == 1
    clock.now += 2  # inside the margin: refreshed before the call, no 401 needed
    _list(client)
    assert fake.token_grants == 2
    assert fake.bearer_seen[-1] != first
    assert fake.calls.count(("GET", "/crm/v3/objects/contacts")) == 3  # no retried call
    client.close()


def test_oauth_token_is_refreshed_once_after_a_401(fake, url):
    client = HubSpotClient(_oauth(url), clock=Clock())
    _list(client)
    fake.expire_tokens()  # revoked or expired early, while our clock says it is fresh
    body = _list(client)
    assert body["results"]
    assert fake.token_grants == 2
    assert fake.calls.count(("GET", "/crm/v3/objects/contacts")) == 3  # 200, 401, 200
    client.close()


def test_oauth_gives_up_after_one_refresh(fake, url):
    client = HubSpotClient(_oauth(url), clock=Clock())
    _list(client)
    fake.faults.fail_next("expired_session", 2, path_contains="/crm/")
    with pytest.raises(AuthError) as info:
        _list(client)
    assert info.value.context["status"] == 401
    assert fake.token_grants == 2
    client.close()


def test_private_token_401_is_an_auth_error_without_refresh(fake, url):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    fake.faults.fail_next("expired_session", 1)
    with pytest.raises(AuthError, match="rejected the credentials"):
        _list(client)
    assert fake.token_grants == 0
    client.close()


@pytest.mark.parametrize(
    "change",
    [{"refresh_token": "rt-wrong"}, {"client_secret": "cs-wrong"}],
    ids=["refresh-token", "client-secret"],
)
def test_refused_oauth_credentials_fail_check_and_read(url, change):
    cfg = HubSpotConfig.model_validate(
        {**_oauth(url).model_dump(), **change, "objects": ["contacts"]}
    )
    conn = HubSpotConnector(cfg)
    result = conn.check()
    assert not result.ok
    assert "OAuth" in result.message
    with pytest.raises(AuthError):
        list(conn.read("contacts", None))
    conn.close()


def test_check_reports_a_bad_private_token(url):
    conn = HubSpotConnector(HubSpotConfig(base_url=url, access_token="pat-na1-wrong"))
    result = conn.check()
    assert not result.ok
    assert "rejected the credentials" in result.message
    conn.close()


def test_check_passes_and_reads_every_configured_object(fake, url):
    conn = HubSpotConnector(HubSpotConfig(base_url=url, access_token=PRIVATE_TOKEN))
    assert conn.check().ok
    listed = {path for method, path in fake.calls if method == "GET"}
    assert listed == {f"/crm/v3/objects/{o}" for o in ("contacts", "companies", "deals")}
    conn.close()


def test_rate_limit_is_typed_with_hubspot_retry_after(fake, url):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    fake.faults.fail_next("rate_limit", 1)
    with pytest.raises(RateLimitedError) as info:
        _list(client)
    assert info.value.retry_after == pytest.approx(7.0)
    assert "RATE_LIMITS" in (info.value.details or "")
    assert fake.faults.served == [("rate_limit", "/crm/v3/objects/contacts")]  # not retried
    assert _list(client)["results"]
    client.close()


def test_rate_limit_without_retry_after_waits_out_hubspot_policy_window(fake, url):
    fake.send_retry_after = False
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    fake.faults.fail_next("rate_limit", 1)
    with pytest.raises(RateLimitedError) as info:
        _list(client)
    assert info.value.retry_after == pytest.approx(10.0)  # TEN_SECONDLY_ROLLING
    client.close()


def test_rate_limit_on_a_post_is_not_retried_by_urllib3(fake, url):
    conn = HubSpotConnector(
        HubSpotConfig(base_url=url, access_token=PRIVATE_TOKEN, properties={"contacts": ["email"]})
    )
    fake.faults.fail_next("rate_limit", 1, path_contains="/search")
    with pytest.raises(RateLimitedError):
        list(conn.read("contacts", None))
    assert len(fake.search_bodies) == 0  # the fault answered before the body was read
    assert len(fake.faults.served) == 1
    conn.close()


@pytest.mark.parametrize("statuses", [1, 2], ids=["502", "503"])
def test_server_errors_are_unavailable(fake, url, statuses):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    fake.faults.fail_next("server_error", statuses)
    for _ in range(statuses):
        with pytest.raises(UnavailableError) as info:
            _list(client)
    assert info.value.context["status"] == (502 if statuses == 1 else 503)
    client.close()


@pytest.mark.parametrize("call", ["list", "search"], ids=["get", "post"])
def test_timeouts_are_remote_timeouts(fake, url, call):
    client = HubSpotClient(
        HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN, timeout_s=0.2)
    )
    fake.faults.fail_next("timeout", 1)

    def send() -> object:
        if call == "list":
            return _list(client)
        return client.search(
            "contacts", filter_groups=[], sort_property="lastmodifieddate", properties=[], limit=1
        )

    with pytest.raises(RemoteTimeoutError, match=r"within 0\.2 s"):
        send()
    client.close()


def test_connection_refused_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens
    client = HubSpotClient(
        HubSpotConnection(base_url=f"http://127.0.0.1:{port}", access_token=PRIVATE_TOKEN)
    )
    with pytest.raises(UnavailableError, match="could not be reached"):
        _list(client)
    client.close()


def test_other_4xx_is_fatal(fake, url):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    with pytest.raises(FatalError, match="HTTP 400, VALIDATION_ERROR"):
        client.search(
            "contacts",
            filter_groups=[],
            sort_property="lastmodifieddate",
            properties=[],
            limit=201,
        )
    client.close()


def test_close_is_idempotent_and_a_closed_client_refuses_calls(url):
    client = HubSpotClient(HubSpotConnection(base_url=url, access_token=PRIVATE_TOKEN))
    client.close()
    client.close()
    with pytest.raises(FatalError, match="closed"):
        _list(client)


def test_no_secret_reaches_logs_or_errors(fake, url, caplog):
    caplog.set_level(logging.DEBUG)
    conn = HubSpotConnector(
        HubSpotConfig.model_validate({**_oauth(url).model_dump(), "page_size": 1})
    )
    assert conn.check().ok
    list(conn.read("contacts", None))
    fake.expire_tokens()
    list(conn.read("contacts", None))
    fake.faults.fail_next("server_error", 1)
    with pytest.raises(UnavailableError) as info:
        list(conn.read("contacts", None))
    conn.close()
    issued = [t for t in fake.bearer_seen if t]
    assert issued
    text = caplog.text + str(info.value) + repr(info.value.to_dict()) + (info.value.details or "")
    for secret in [CLIENT_SECRET, REFRESH, *issued]:
        assert secret not in text
    assert "a@x.io" not in caplog.text  # no response body was logged
    assert CLIENT_SECRET not in repr(conn.config)


def test_retry_after_as_seconds_or_http_date():
    assert retry_after_of({"Retry-After": "7"}) == 7.0
    assert retry_after_of({"Retry-After": "1.5"}) == 1.5
    assert retry_after_of({}) is None
    assert retry_after_of({"Retry-After": "soon"}) is None
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_of({"Retry-After": header}, now=now.timestamp()) == pytest.approx(30)
