"""The HubSpot webhook verifier: published known-answer vectors, v3 checks, legacy opt-in."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hubspot.utils.signature import Signature  # an independent signer: HubSpot's own SDK

from junction.api.verifiers import (
    SignatureError,
    SignedRequest,
    VerifierSettings,
    default_verifiers,
)
from junction.api.verifiers.hubspot import HubSpotVerifier, decode_uri, sign_legacy, sign_v3
from junction.core.errors import AuthError, ConfigError

# HubSpot/hubspot-api-python tests/spec/utils/test_signature.py (RELIABILITY.md C4)
KAT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
KAT_URI = "https://www.example.com/webhook_uri"
KAT_BODY = b"{'example_field':'example_value'}"
KAT_JSON_BODY = b'{"example_field":"example_value"}'

SECRET = "5f1b8c3e-2a4d-4e6f-9a0b-1c2d3e4f5a6b"
URL = "https://hooks.example.com/hooks/hubspot"
BODY = b'[{"eventId":3816279340,"subscriptionType":"contact.creation","objectId":1246978}]'
NOW = 1_772_355_600.0  # seconds
TS = str(int(NOW * 1000) - 2_000)  # sent two seconds ago, in ms


def _verifier(secret: str | None = SECRET, tolerance_s: int = 300, **options: Any):
    return default_verifiers.build(
        "hubspot", VerifierSettings("hubspot", secret, tolerance_s=tolerance_s, options=options)
    )


def _v3_request(
    *,
    body: bytes = BODY,
    url: str = URL,
    ts: str = TS,
    secret: str = SECRET,
    method: str = "POST",
    signed_url: str | None = None,
) -> SignedRequest:
    signature = Signature.get_signature(secret, body.decode(), "v3", signed_url or url, method, ts)
    headers = {
        "x-hubspot-signature-v3": signature,
        "x-hubspot-request-timestamp": ts,
        "content-type": "application/json",
    }
    return SignedRequest(method, url, headers, body)


def _legacy_request(version: str, *, secret: str = SECRET, body: bytes = BODY) -> SignedRequest:
    signature = Signature.get_signature(secret, body.decode(), version, URL, "POST")
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    return SignedRequest("POST", URL, headers, body)


@pytest.mark.parametrize(
    ("version", "method", "body", "expected"),
    [
        (
            "v1",
            "POST",
            KAT_BODY,
            "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750",
        ),
        (
            "v2",
            "POST",
            KAT_BODY,
            "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383",
        ),
        (
            "v2",
            "POST",
            KAT_JSON_BODY,
            "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
        ),
        ("v2", "GET", b"", "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"),
    ],
    ids=["v1", "v2-post", "v2-post-json", "v2-get-empty"],
)
def test_legacy_known_answer_vectors(version, method, body, expected):
    assert sign_legacy(KAT_SECRET, version, method, KAT_URI, body) == expected
    verifier = _verifier(KAT_SECRET, allow_legacy=True)
    headers = {"x-hubspot-signature": expected, "x-hubspot-signature-version": version}
    assert verifier.verify(SignedRequest(method, KAT_URI, headers, body), now=NOW).event_id is None


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("15000000", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="),
        ("1693657560000", "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="),
    ],
    ids=["reliability-c4", "sdk-test"],
)
def test_v3_known_answer_vectors(ts, expected):
    assert sign_v3(KAT_SECRET, "POST", KAT_URI, KAT_BODY, ts) == expected
    headers = {"x-hubspot-signature-v3": expected, "x-hubspot-request-timestamp": ts}
    request = SignedRequest("POST", KAT_URI, headers, KAT_BODY)
    verified = _verifier(KAT_SECRET).verify(request, now=int(ts) / 1000 + 10)
    assert verified.event_id is None
    assert verified.timestamp == pytest.approx(int(ts) / 1000)


def test_registry_builds_the_hubspot_verifier():
    assert isinstance(_verifier(), HubSpotVerifier)


def test_good_v3_request_is_verified():
    verified = _verifier().verify(_v3_request(), now=NOW)
    assert verified.event_id is None  # events are deduped per item by eventId
    assert verified.timestamp == pytest.approx(int(TS) / 1000)


@pytest.mark.parametrize(
    "tamper",
    [
        {"body": BODY.replace(b"1246978", b"1246979")},
        {"url": URL + "?x=1"},
        {"method": "PUT"},
    ],
    ids=["body", "url", "method"],
)
def test_tampered_v3_request_is_refused(tamper):
    good = _v3_request()
    request = SignedRequest(
        tamper.get("method", good.method),
        tamper.get("url", good.url),
        good.headers,
        tamper.get("body", good.body),
    )
    with pytest.raises(SignatureError) as info:
        _verifier().verify(request, now=NOW)
    assert info.value.reason == "no_match"
    assert not info.value.stale
    assert isinstance(info.value, AuthError)


def test_wrong_secret_is_refused():
    request = _v3_request(secret="another-secret")
    with pytest.raises(SignatureError, match="could not be verified"):
        _verifier().verify(request, now=NOW)


@pytest.mark.parametrize(
    ("offset_ms", "reason"), [(-301_000, "too_old"), (301_000, "too_new")], ids=["old", "future"]
)
def test_timestamp_outside_the_window_is_stale(offset_ms, reason):
    ts = str(int(NOW * 1000) + offset_ms)
    with pytest.raises(SignatureError) as info:
        _verifier().verify(_v3_request(ts=ts), now=NOW)
    assert info.value.stale
    assert info.value.code == "stale_timestamp"
    assert info.value.reason == reason


def test_a_timestamp_in_seconds_is_refused_not_read_as_milliseconds_or_accepted():
    # correctly signed over the seconds value: read as HubSpot's milliseconds it is January
    # 1970, so the request is stale, whatever the window (RELIABILITY case 35)
    ts = str(int(NOW))
    with pytest.raises(SignatureError) as info:
        _verifier(tolerance_s=86_400).verify(_v3_request(ts=ts), now=NOW)
    assert info.value.stale
    assert info.value.reason == "too_old"


def test_the_hook_tolerance_sets_the_window():
    ts = str(int(NOW * 1000) - 100_000)  # 100 s old
    assert _verifier(tolerance_s=120).verify(_v3_request(ts=ts), now=NOW)
    with pytest.raises(SignatureError) as info:
        _verifier(tolerance_s=60).verify(_v3_request(ts=ts), now=NOW)
    assert info.value.stale


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-hubspot-request-timestamp": None}, "missing_header"),
        ({"x-hubspot-request-timestamp": "17723556e3"}, "bad_timestamp"),
        ({"x-hubspot-signature-v3": "not base64!"}, "bad_signature"),
        ({"x-hubspot-signature-v3": base64.b64encode(b"short").decode()}, "bad_signature"),
    ],
    ids=["no-timestamp", "bad-timestamp", "not-base64", "short-mac"],
)
def test_malformed_v3_headers_are_refused(headers, reason):
    good = _v3_request()
    merged = {k: v for k, v in {**good.headers, **headers}.items() if v is not None}
    with pytest.raises(SignatureError) as info:
        _verifier().verify(SignedRequest("POST", URL, merged, BODY), now=NOW)
    assert info.value.reason == reason


def test_unsigned_request_is_refused():
    with pytest.raises(SignatureError) as info:
        _verifier().verify(SignedRequest("POST", URL, {}, BODY), now=NOW)
    assert info.value.reason == "missing_header"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signatures_are_refused_unless_allowed(version):
    request = _legacy_request(version)
    with pytest.raises(SignatureError) as info:
        _verifier().verify(request, now=NOW)
    assert info.value.reason == "legacy_refused"
    verified = _verifier(allow_legacy=True).verify(request, now=NOW)
    assert verified.timestamp is None  # nothing to bound a replay with


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signature_with_a_wrong_secret_is_refused(version):
    request = _legacy_request(version, secret="another-secret")
    with pytest.raises(SignatureError) as info:
        _verifier(allow_legacy=True).verify(request, now=NOW)
    assert info.value.reason == "no_match"


def test_a_failing_v3_signature_cannot_be_rescued_by_a_legacy_one():
    legacy = _legacy_request("v1")
    headers = {
        **legacy.headers,
        "x-hubspot-signature-v3": base64.b64encode(b"\0" * 32).decode(),
        "x-hubspot-request-timestamp": TS,
    }
    with pytest.raises(SignatureError) as info:
        _verifier(allow_legacy=True).verify(SignedRequest("POST", URL, headers, BODY), now=NOW)
    assert info.value.reason == "no_match"


def test_public_url_replaces_the_url_as_received():
    # behind a proxy the hub sees its internal URL; HubSpot signed the public one
    request = _v3_request(url="http://10.0.0.5:8080/hooks/hubspot", signed_url=URL)
    with pytest.raises(SignatureError):
        _verifier().verify(request, now=NOW)
    assert _verifier(public_url=URL).verify(request, now=NOW)


def test_uri_is_also_tried_with_the_escapes_hubspot_decodes():
    received = URL + "?portal=33&next=%2Fdone%3Fa%3Db&name=a%20b"
    assert decode_uri(received) == URL + "?portal=33&next=/done?a%3Db&name=a%20b"
    signed_decoded = _v3_request(url=received, signed_url=decode_uri(received))
    assert _verifier().verify(signed_decoded, now=NOW)
    signed_as_sent = _v3_request(url=received)
    assert _verifier().verify(signed_as_sent, now=NOW)


def test_previous_secret_is_accepted_while_rotating():
    request = _v3_request(secret="old-secret")
    with pytest.raises(SignatureError):
        _verifier().verify(request, now=NOW)
    assert _verifier(previous_secrets=["old-secret"]).verify(request, now=NOW)


def test_a_secret_is_required():
    with pytest.raises(ConfigError, match="client secret"):
        _verifier(secret=None)


def test_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="invalid options"):
        _verifier(allow_legacyy=True)
