"""The Salesforce error table, end to end: the fake answers, the real SDK raises, we translate."""

from __future__ import annotations

import pytest

from connectors.salesforce import SalesforceConfig, SalesforceConnector
from junction.core.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RateLimitedError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)
from tests.fakes.salesforce import FakeOrg, options_for
from tests.fakes.salesforce_data import lead_fields


@pytest.fixture
def org():
    org = FakeOrg()
    for i in range(3):
        org.insert("Lead", lead_fields(i))
    return org


@pytest.fixture
def conn(org, url):
    c = SalesforceConnector(SalesforceConfig.model_validate(options_for(org, url)))
    assert c.check().ok
    yield c
    c.close()


@pytest.mark.parametrize(
    ("status", "code", "error", "retry_after"),
    [
        (403, "REQUEST_LIMIT_EXCEEDED", RateLimitedError, 3600.0),
        (403, "INSUFFICIENT_ACCESS", AuthError, None),
        (408, "REQUEST_TIMEOUT", RemoteTimeoutError, None),
        (500, "UNKNOWN_EXCEPTION", RetryableError, None),
        (502, "BAD_GATEWAY", UnavailableError, None),
        (504, "GATEWAY_TIMEOUT", UnavailableError, None),
        (400, "MALFORMED_QUERY", FatalError, None),
        (400, "INVALID_FIELD", ConfigError, None),
        (404, "NOT_FOUND", FatalError, None),
        (300, "MULTIPLE_CHOICES", FatalError, None),
    ],
    ids=lambda v: str(v),
)
def test_status_and_error_code_translation(org, conn, status, code, error, retry_after):
    org.answer_next["/query"] = (status, code)
    with pytest.raises(error) as info:
        list(conn.read("Lead", {"v": 1, "watermark": "2026-03-01T00:00:00.000Z", "seen": {}}))
    assert type(info.value) is error
    assert info.value.context["status"] == status
    assert "forced by the test" not in info.value.user_message  # bodies stay in details
    if retry_after is not None:
        assert info.value.retry_after == retry_after


def test_a_failed_bulk_job_is_fatal(org, url):
    org.bulk_fail = True
    options = options_for(org, url, bulk_threshold=0, bulk_poll_s=0.01)
    conn = SalesforceConnector(SalesforceConfig.model_validate(options))
    with pytest.raises(FatalError) as info:
        list(conn.read("Lead", None))
    conn.close()
    assert "Bulk API 2.0 job failed" in info.value.user_message


def test_check_reports_instead_of_raising(org, conn):
    org.answer_next["/sobjects"] = (503, "SERVER_UNAVAILABLE")
    result = conn.check()
    assert not result.ok
    assert result.message == "Salesforce is unavailable"
