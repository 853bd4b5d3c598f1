from __future__ import annotations

import pickle

import pytest

from junction.core import errors as e


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (e.AuthError, e.ConfigError),
        (e.RateLimitedError, e.RetryableError),
        (e.UnavailableError, e.RetryableError),
        (e.RemoteTimeoutError, e.RetryableError),
        (e.EndpointGoneError, e.FatalError),
        (e.MappingError, e.RecordError),
        (e.EncodingError, e.ParseError),
        (e.DTDForbiddenError, e.UnsafeXMLError),
        (e.ModelLoadError, e.ConfigError),
    ],
)
def test_taxonomy(cls: type[e.JunctionError], base: type[e.JunctionError]) -> None:
    assert issubclass(cls, base)
    assert issubclass(cls, e.JunctionError)


def test_user_message_is_apart_from_details_and_pickles() -> None:
    err = e.RateLimitedError(
        "slow down",
        retry_after=12.5,
        details="x-secret-header leaked?",
        context={"plugin": "hubspot"},
    )
    assert str(err) == "slow down [plugin=hubspot]"
    assert "x-secret" not in str(err)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, e.RateLimitedError)
    assert back.retry_after == 12.5
    assert back.details == err.details
    assert back.context == err.context
    assert back.to_dict() == {
        "type": "RateLimitedError",
        "code": "rate_limited",
        "message": "slow down",
        "context": {"plugin": "hubspot"},
    }


def test_record_error_names_field() -> None:
    err = e.MappingError("bad email", field="email")
    assert err.field == "email"
    assert err.context["field"] == "email"
    assert e.RetryableError("x").retryable
    assert not e.FatalError("x").retryable
