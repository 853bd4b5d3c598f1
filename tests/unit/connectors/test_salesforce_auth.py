"""Each Salesforce auth flow against the fake org, through the real SDK's login code."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from connectors.salesforce import SalesforceConfig, SalesforceConnector
from junction.core.errors import AuthError, ConfigError, RateLimitedError, UnavailableError
from tests.fakes.salesforce import FakeOrg, options_for
from tests.fakes.salesforce_data import lead_fields

GRANTS = {
    "client_credentials": "client_credentials",
    "jwt_bearer": "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "password": "soap",
    "oauth_password": "password",
}
WRONG = {
    "client_credentials": {"client_secret": "wrong"},
    "jwt_bearer": {"username": "someone-else@acme.example"},
    "password": {"security_token": "wrong"},
    "oauth_password": {"password": "wrong"},
    "session": {"session_id": "00D5g000004ABCD!not-a-token"},
}


@pytest.fixture
def org():
    org = FakeOrg()
    for i in range(250):
        org.insert("Lead", lead_fields(i))
    return org


def connect(options) -> SalesforceConnector:
    return SalesforceConnector(SalesforceConfig.model_validate({"page_size": 200, **options}))


@pytest.mark.parametrize("auth", [*GRANTS, "session"])
def test_each_auth_flow_checks_and_reads(org, url, auth, caplog):
    caplog.set_level(logging.DEBUG)
    options = options_for(org, url, auth)
    conn = connect(options)
    assert conn.check().ok
    batches = list(conn.read("Lead", None))
    conn.close()
    assert sum(len(b) for b in batches) == 250
    assert org.logins == ([GRANTS[auth]] if auth in GRANTS else [])
    for secret in ("client_secret", "password", "security_token", "session_id"):
        if secret in options:
            assert options[secret] not in caplog.text
    assert not any(t in caplog.text for t in org.tokens)


@pytest.mark.parametrize("auth", [*GRANTS, "session"])
def test_bad_credentials_fail_check_and_raise_auth_error_on_read(org, url, auth):
    conn = connect({**options_for(org, url, auth), **WRONG[auth]})
    result = conn.check()
    assert not result.ok
    assert result.message
    assert "wrong" not in result.message
    with pytest.raises(AuthError):
        list(conn.read("Lead", None))
    conn.close()


def test_relogin_after_revocation_for_login_based_auth_only(org, url):
    login = connect(options_for(org, url, "password"))
    reader = login.read("Lead", None)
    first = next(reader)
    org.revoke_tokens()
    rest = list(reader)
    login.close()
    assert len(first) + sum(len(b) for b in rest) == 250
    assert org.logins == ["soap", "soap"]

    direct = connect(options_for(org, url, "session"))
    reader = direct.read("Lead", None)
    next(reader)
    org.revoke_tokens()
    with pytest.raises(AuthError):
        list(reader)
    direct.close()


def test_bulk_job_relogs_in_after_revocation(org, url):
    conn = connect(
        options_for(
            org, url, "oauth_password", bulk_threshold=10, bulk_page_size=100, bulk_poll_s=0.01
        )
    )
    reader = conn.read("Lead", None)
    first = next(reader)
    org.revoke_tokens()  # the SDK's Bulk 2.0 calls do not re-login; the client does
    rest = list(reader)
    conn.close()
    assert len(first) + sum(len(b) for b in rest) == 250
    assert org.logins == ["password", "password"]


def test_login_rate_limited_or_down_is_retryable_not_auth(org, url):
    conn = connect(options_for(org, url, "client_credentials"))
    org.faults.fail_next("rate_limit", 1, path_contains="/oauth2/token")
    with pytest.raises(RateLimitedError) as info:
        list(conn.read("Lead", None))
    assert info.value.retry_after == 7.0
    org.faults.fail_next("server_error", 1, path_contains="/Soap/u/")
    soap = connect(options_for(org, url, "password"))
    with pytest.raises(UnavailableError):
        list(soap.read("Lead", None))
    conn.close()
    soap.close()


def test_unusable_private_key_is_a_config_error(org, url):
    conn = connect(options_for(org, url, "jwt_bearer", private_key="not a pem key"))
    with pytest.raises(ConfigError):
        list(conn.read("Lead", None))
    assert not conn.check().ok
    conn.close()


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"auth": "client_credentials", "client_id": "x", "client_secret": "y"}, "My Domain"),
        ({"auth": "password", "username": "u", "password": "p"}, "security_token"),
        ({"auth": "session", "session_id": "t"}, "instance_url"),
        (
            {"auth": "session", "session_id": "t", "instance_url": "https://x", "password": "p"},
            "does not use",
        ),
        (
            {
                "auth": "jwt_bearer",
                "client_id": "c",
                "username": "u",
                "private_key": "k",
                "base_url": "http://127.0.0.1:1/path",
            },
            "base_url",
        ),
        (
            {"auth": "session", "session_id": "t", "instance_url": "https://x", "page_size": 100},
            "page_size",
        ),
        (
            {
                "auth": "session",
                "session_id": "t",
                "instance_url": "https://x",
                "objects": ["Lead; DROP"],
            },
            "objects",
        ),
    ],
    ids=[
        "cc-needs-my-domain",
        "soap-needs-token",
        "session-needs-url",
        "unused-secret",
        "base-url-no-path",
        "page-size-min",
        "object-names",
    ],
)
def test_config_is_validated(options, word):
    with pytest.raises(ValidationError) as info:
        SalesforceConfig.model_validate(options)
    assert word in str(info.value)


def test_secrets_are_secret_str_and_not_in_repr(org, url):
    options = options_for(org, url, "oauth_password")
    config = SalesforceConfig.model_validate(options)
    assert options["password"] not in repr(config)
    assert options["client_secret"] not in repr(config)


def test_token_endpoint_outage_is_unavailable(org, url):
    conn = connect(options_for(org, url, "client_credentials"))
    org.faults.fail_next("server_error", 1, path_contains="/oauth2/token")
    with pytest.raises(UnavailableError):
        list(conn.read("Lead", None))
    assert len(list(conn.read("Lead", None))) == 2  # the next attempt logs in
    conn.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 2000),
        ({"batch_size": 1000}, 1000),
        ({"batch_size": 50}, 200),
        ({"batch_size": 5000, "page_size": 500}, 500),
    ],
)
def test_the_pipelines_batch_size_lowers_the_page_size(extra, expected):
    base = {"auth": "session", "session_id": "t", "instance_url": "https://x"}
    assert SalesforceConfig.model_validate({**base, **extra}).effective_page_size == expected
