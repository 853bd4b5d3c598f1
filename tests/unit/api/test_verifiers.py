"""The Standard Webhooks verifier: known-answer vectors and the standard-webhooks test cases."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict
from standardwebhooks import Webhook

from junction.api.verifiers import (
    SignatureError,
    SignedRequest,
    Verified,
    VerifierRegistry,
    VerifierSettings,
    default_verifiers,
)
from junction.api.verifiers.standard_webhooks import (
    StandardWebhooksVerifier,
    secret_key,
    sign,
)
from junction.core.errors import AuthError, ConfigError

# the published vector (standard-webhooks test_sign_function; RELIABILITY.md C1)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()


def _verifier(secret: str | None = SECRET, tolerance_s: int = 300, **options: Any):
    return default_verifiers.build(
        "standard_webhooks",
        VerifierSettings("partner", secret, tolerance_s=tolerance_s, options=options),
    )


def _request(
    headers: dict[str, str], body: bytes = BODY, *, prefix: str = "webhook"
) -> SignedRequest:
    base = {
        f"{prefix}-id": MSG_ID,
        f"{prefix}-timestamp": str(TS),
        f"{prefix}-signature": SIGNATURE,
    }
    merged = {k.lower(): v for k, v in {**base, **headers}.items() if v is not None}
    return SignedRequest("POST", "http://127.0.0.1/hooks/partner", merged, body)


def _package_sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    # an independent signer: the standardwebhooks package's own
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())


def _reason(verifier, request: SignedRequest, now: float = TS) -> tuple[str, str]:
    with pytest.raises(SignatureError) as info:
        verifier.verify(request, now=now)
    return info.value.code, info.value.reason


def test_known_answer_vector() -> None:
    mac = sign(secret_key(SECRET), MSG_ID, TS, BODY)
    assert "v1," + base64.b64encode(mac).decode() == SIGNATURE
    assert _package_sign(SECRET, MSG_ID, TS, BODY) == SIGNATURE
    assert _verifier().verify(_request({}), now=TS) == Verified(MSG_ID, float(TS))


def test_secret_with_and_without_the_whsec_prefix() -> None:
    bare = SECRET.removeprefix("whsec_")
    assert secret_key(bare) == secret_key(SECRET)
    assert _verifier(bare).verify(_request({}), now=TS).event_id == MSG_ID


@pytest.mark.parametrize(
    "missing", ["webhook-id", "webhook-timestamp", "webhook-signature"], ids=lambda h: h
)
def test_a_missing_header_is_rejected(missing: str) -> None:
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": SIGNATURE,
    }
    del headers[missing]
    req = SignedRequest("POST", "http://h/hooks/partner", headers, BODY)
    assert _reason(_verifier(), req) == ("invalid_signature", "missing_header")
    empty = SignedRequest("POST", "http://h/hooks/partner", {**headers, missing: ""}, BODY)
    assert _reason(_verifier(), empty) == ("invalid_signature", "missing_header")


@pytest.mark.parametrize("value", ["hello", "1614265330.5", "-1614265330", " 1614265330", ""])
def test_a_malformed_timestamp_is_rejected(value: str) -> None:
    code, reason = _reason(_verifier(), _request({"webhook-timestamp": value}))
    assert code == "invalid_signature"
    assert reason in ("bad_timestamp", "missing_header")


@pytest.mark.parametrize(
    ("tolerance", "offset", "ok"),
    [
        (300, 300, True),
        (300, 301, False),
        (300, -300, True),
        (300, -301, False),
        (60, 61, False),
        (60, -61, False),
        (3600, 3599, True),
    ],
    ids=lambda v: str(v),
)
def test_the_configured_replay_window_is_enforced(tolerance: int, offset: int, ok: bool) -> None:
    # the message was signed at TS; the receiver's clock reads TS - offset (offset > 0: the
    # timestamp is in the future; offset < 0: the message is old)
    verifier = _verifier(tolerance_s=tolerance)
    now = TS - offset
    if ok:
        assert verifier.verify(_request({}), now=now).event_id == MSG_ID
    else:
        code, reason = _reason(verifier, _request({}), now=now)
        assert code == "stale_timestamp"
        assert reason == ("too_new" if offset > 0 else "too_old")


def test_a_stale_timestamp_is_reported_even_with_a_fresh_signature() -> None:
    old = TS - 301
    sig = _package_sign(SECRET, MSG_ID, old, BODY)
    req = _request({"webhook-timestamp": str(old), "webhook-signature": sig})
    assert _reason(_verifier(), req) == ("stale_timestamp", "too_old")


def test_several_signatures_pass_when_one_matches() -> None:
    wrong = _package_sign(OTHER_SECRET, MSG_ID, TS, BODY)
    header = f"v1a,{'A' * 86}== {wrong} {SIGNATURE} v2,abc"
    assert _verifier().verify(_request({"webhook-signature": header}), now=TS).event_id == MSG_ID


@pytest.mark.parametrize(
    "header",
    [
        "v2," + SIGNATURE.split(",", 1)[1],  # a valid mac under an unknown version
        "v1a," + SIGNATURE.split(",", 1)[1],  # asymmetric scheme: not accepted as v1
        "v1,not-base64!!",
        "v1," + base64.b64encode(b"short").decode(),
        "v1",
        ",,,",
        SIGNATURE[:-4] + "AAA=",
    ],
    ids=["v2", "v1a", "bad-base64", "short-mac", "no-comma", "commas", "altered"],
)
def test_unusable_or_wrong_signatures_are_rejected(header: str) -> None:
    req = _request({"webhook-signature": header})
    assert _reason(_verifier(), req) == ("invalid_signature", "no_match")


def test_the_wrong_secret_is_rejected() -> None:
    assert _reason(_verifier(OTHER_SECRET), _request({})) == ("invalid_signature", "no_match")


def test_verification_is_on_the_raw_bytes() -> None:
    # the same JSON re-serialized with other whitespace no longer matches
    assert _reason(_verifier(), _request({}, b'{"test":2432232314}')) == (
        "invalid_signature",
        "no_match",
    )
    # and bytes that are not UTF-8 still verify: the MAC covers bytes, not text
    raw = b'{"name": "\xff\xfe"}'
    mac = base64.b64encode(sign(secret_key(SECRET), MSG_ID, TS, raw)).decode()
    req = _request({"webhook-signature": f"v1,{mac}"}, raw)
    assert _verifier().verify(req, now=TS).event_id == MSG_ID


def test_a_changed_id_or_timestamp_breaks_the_signature() -> None:
    assert _reason(_verifier(), _request({"webhook-id": MSG_ID + "x"})) == (
        "invalid_signature",
        "no_match",
    )
    assert _reason(_verifier(), _request({"webhook-timestamp": str(TS + 1)})) == (
        "invalid_signature",
        "no_match",
    )


def test_an_unusable_message_id_is_rejected() -> None:
    for bad in ("a" * 201, "id with spaces", "id\x00"):
        assert _reason(_verifier(), _request({"webhook-id": bad}))[1] == "bad_id"


def test_receiver_side_rotation_accepts_previous_secrets() -> None:
    rotated = _verifier(OTHER_SECRET, previous_secrets=[SECRET])
    assert rotated.verify(_request({}), now=TS).event_id == MSG_ID
    fresh = _package_sign(OTHER_SECRET, MSG_ID, TS, BODY)
    assert rotated.verify(_request({"webhook-signature": fresh}), now=TS).event_id == MSG_ID


def test_svix_header_names() -> None:
    verifier = _verifier(header_prefix="svix")
    assert verifier.verify(_request({}, prefix="svix"), now=TS).event_id == MSG_ID
    assert _reason(verifier, _request({}))[1] == "missing_header"


def test_signature_errors_are_auth_errors_without_secrets() -> None:
    with pytest.raises(SignatureError) as info:
        _verifier(OTHER_SECRET).verify(_request({}), now=TS)
    err = info.value
    assert isinstance(err, AuthError)
    assert err.user_message == "the request signature could not be verified"
    assert SECRET not in str(err.to_dict())
    assert OTHER_SECRET not in str(err.to_dict())


def test_bad_configuration_is_a_config_error_that_hides_the_secret() -> None:
    with pytest.raises(ConfigError, match="needs a secret"):
        _verifier(None)
    with pytest.raises(ConfigError, match="base64"):
        _verifier("whsec_")
    with pytest.raises(ConfigError, match=r"options .*header_prefix") as info:
        _verifier(header_prefix="x-secret-value")
    assert "x-secret-value" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown verifier 'nope'"):
        default_verifiers.build("nope", VerifierSettings("partner", SECRET))


class _Token(BaseModel):
    model_config = ConfigDict(extra="forbid")
    header: str = "x-token"


class _TokenVerifier:
    """A toy verifier: one class plus a registration is all a new scheme needs."""

    name: ClassVar[str] = "token"
    options_model: ClassVar[type[BaseModel]] = _Token

    def __init__(self, settings: VerifierSettings) -> None:
        self.options = _Token.model_validate(dict(settings.options))
        self.secret = settings.secret

    def verify(self, request: SignedRequest, *, now: float) -> Verified:
        if request.header(self.options.header) != self.secret:
            raise SignatureError("no_match")
        return Verified(event_id=None)


def test_a_new_verifier_is_one_class_and_a_registration() -> None:
    registry = VerifierRegistry(extra={"token": _TokenVerifier})
    assert {"standard_webhooks", "token"} <= set(registry.names())
    v = registry.build("token", VerifierSettings("acme", "s3cret", options={"header": "x-k"}))
    req = SignedRequest("POST", "http://h/hooks/acme", {"x-k": "s3cret"}, b"{}")
    assert v.verify(req, now=0).event_id is None
    with pytest.raises(SignatureError):
        v.verify(SignedRequest("POST", "http://h/hooks/acme", {}, b"{}"), now=0)
    assert registry.get("standard_webhooks") is StandardWebhooksVerifier
    assert "standard_webhooks" in default_verifiers.names()
