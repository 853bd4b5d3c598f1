"""Forged, stale, misdirected and malformed credentials: every one is a 401 problem+json.

A correctly forged token (right key, every claim, typed ``at+jwt``) is the positive control: it
proves the forgery helpers work, so each attack fails for the reason it names and not for a typo
in the test.  A refused bearer token is challenged with ``Bearer error="invalid_token"`` (RFC
6750 §3.1); a request with no credentials with a bare ``Bearer``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from junction.api.auth import LEEWAY_S
from junction.store.tables import api_clients
from tests.api.harness import SIGNING_KEY, ApiHarness

PROTECTED = "/api/v1/audit"  # an admin route
AUTH_CODES = {"invalid_token", "token_expired", "missing_credentials", "invalid_api_key"}
# words that would betray the verifier's internals
LEAKS = ("Traceback", "jwt", "PyJWT", "Signature", "Decode", "HS256", "algorithm", "Exception")
DROP = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], payload: dict[str, Any], signer: Any = None) -> str:
    """A JWT assembled by hand (PyJWT refuses to make some of these)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64(sig)}"


def claims(api: ApiHarness, client_id: str, /, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": api.ctx.cfg.api.issuer,
        "aud": api.ctx.cfg.api.audience,
        "sub": client_id,
        "roles": ["admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


AT_JWT = {"typ": "at+jwt"}  # an access token's JOSE type (RFC 9068 §2.1)


def hs256(
    payload: dict[str, Any], key: str | bytes = SIGNING_KEY, header: dict[str, Any] | None = None
) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=AT_JWT if header is None else header)


def assert_rejected(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 401
    assert body["code"] in AUTH_CODES
    refused_token = body["code"] in ("invalid_token", "token_expired")
    challenge = 'Bearer error="invalid_token"' if refused_token else "Bearer"
    assert r.headers["www-authenticate"] == challenge
    for word in LEAKS:
        assert word.lower() not in r.text.lower(), f"{word!r} leaked: {r.text}"
    assert SIGNING_KEY not in r.text


@pytest.fixture
def admin_id(api_sqlite: ApiHarness) -> str:
    client, _ = api_sqlite.clients.create("jwt-admin", ["admin"])
    return client.id


def call(api: ApiHarness, headers: dict[str, str]) -> httpx.Response:
    with api.http() as h:
        return h.get(PROTECTED, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_correctly_forged_token_is_accepted_positive_control(
    api_sqlite: ApiHarness, admin_id: str
) -> None:
    r = call(api_sqlite, bearer(hs256(claims(api_sqlite, admin_id))))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_every_spelling_of_the_access_token_type_is_accepted(
    api_sqlite: ApiHarness, admin_id: str, typ: str
) -> None:
    # RFC 9068 §4: "at+jwt" or "application/at+jwt"; media types compare case-insensitively
    token = hs256(claims(api_sqlite, admin_id), header={"typ": typ})
    assert call(api_sqlite, bearer(token)).status_code == 200


def test_tokens_the_api_issues_are_typed_as_access_tokens(api_sqlite: ApiHarness) -> None:
    token = api_sqlite.token("viewer")
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert call(api_sqlite, bearer(token)).status_code == 403  # valid: a viewer on an admin route


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _attacks() -> dict[str, Any]:
    """name → function(api, admin_id) giving the Authorization header value."""

    def alg_none(api: ApiHarness, sub: str) -> str:
        return "Bearer " + craft({"alg": "none", "typ": "JWT"}, claims(api, sub))

    def alg_none_mixed_case(api: ApiHarness, sub: str) -> str:
        return "Bearer " + craft({"alg": "nOnE", "typ": "JWT"}, claims(api, sub))

    def alg_hs256_empty_signature(api: ApiHarness, sub: str) -> str:
        return "Bearer " + craft({"alg": "HS256", "typ": "JWT"}, claims(api, sub))

    def wrong_key(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub), "another-key-of-sufficient-length-0123456789")

    def right_key_other_hmac_alg(api: ApiHarness, sub: str) -> str:
        key = SIGNING_KEY.encode()
        signer = lambda msg: hmac.new(key, msg, hashlib.sha512).digest()  # noqa: E731
        return "Bearer " + craft({"alg": "HS512", "typ": "JWT"}, claims(api, sub), signer)

    def rs256(api: ApiHarness, sub: str) -> str:
        return "Bearer " + jwt.encode(claims(api, sub), _rsa(), algorithm="RS256")

    def es256(api: ApiHarness, sub: str) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        return "Bearer " + jwt.encode(claims(api, sub), key, algorithm="ES256")

    def key_confusion_public_key_as_hmac_secret(api: ApiHarness, sub: str) -> str:
        public = (
            _rsa()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        signer = lambda msg: hmac.new(public, msg, hashlib.sha256).digest()  # noqa: E731
        return "Bearer " + craft({"alg": "HS256", "typ": "JWT"}, claims(api, sub), signer)

    def id_token_typed_jwt(api: ApiHarness, sub: str) -> str:
        # right key, every claim, but typed as a plain JWT (what an ID token carries)
        return "Bearer " + hs256(claims(api, sub), header={"typ": "JWT"})

    def untyped(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub), header={})

    def typ_not_a_string(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub), header={"typ": ["at+jwt"]})

    def expired(api: ApiHarness, sub: str) -> str:
        now = int(time.time())
        return "Bearer " + hs256(claims(api, sub, iat=now - 600, nbf=now - 600, exp=now - 60))

    def not_yet_valid(api: ApiHarness, sub: str) -> str:
        now = int(time.time())
        return "Bearer " + hs256(claims(api, sub, nbf=now + 120, exp=now + 600))

    def issued_in_the_future(api: ApiHarness, sub: str) -> str:
        now = int(time.time())
        return "Bearer " + hs256(claims(api, sub, iat=now + 3600, exp=now + 7200))

    def wrong_audience(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, aud="someone-else"))

    def wrong_issuer(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, iss="https://evil.example"))

    def missing_aud(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, aud=DROP))

    def missing_iss(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, iss=DROP))

    def missing_exp(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, exp=DROP))

    def missing_iat(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, iat=DROP))

    def missing_sub(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, sub=DROP))

    def sub_not_a_string(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, sub=12345))

    def unknown_client(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, "jc_doesnotexist00"))

    def exp_not_a_number(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, exp="tomorrow"))

    def garbage(api: ApiHarness, sub: str) -> str:
        return "Bearer not-a-jwt"

    def garbage_three_parts(api: ApiHarness, sub: str) -> str:
        return "Bearer a.b.c"

    def garbage_bad_base64(api: ApiHarness, sub: str) -> str:
        return "Bearer !!!.###.$$$"

    def bearer_without_token(api: ApiHarness, sub: str) -> str:
        return "Bearer"

    def basic_scheme(api: ApiHarness, sub: str) -> str:
        return "Basic " + base64.b64encode(f"{sub}:secret".encode()).decode()

    def unknown_scheme(api: ApiHarness, sub: str) -> str:
        return "Token " + hs256(claims(api, sub))

    def oversized(api: ApiHarness, sub: str) -> str:
        return "Bearer " + hs256(claims(api, sub, pad="x" * 12_000))

    return {f.__name__: f for f in locals().values() if callable(f) and f is not _rsa}


ATTACKS = _attacks()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_rejected_with_401_problem(
    api_sqlite: ApiHarness, admin_id: str, attack: str
) -> None:
    value = ATTACKS[attack](api_sqlite, admin_id)
    assert_rejected(call(api_sqlite, {"Authorization": value}))


@pytest.mark.parametrize("ago", [LEEWAY_S + 1, 59, 61, 3600])
def test_an_expired_token_is_refused_past_the_leeway(
    api_sqlite: ApiHarness, admin_id: str, ago: int
) -> None:
    now = int(time.time())
    token = hs256(claims(api_sqlite, admin_id, iat=now - 7200, nbf=now - 7200, exp=now - ago))
    r = call(api_sqlite, bearer(token))
    assert_rejected(r)
    assert r.json()["code"] == "token_expired"


def test_the_leeway_absorbs_a_little_clock_skew_and_no_more_than_a_minute(
    api_sqlite: ApiHarness, admin_id: str
) -> None:
    assert 0 < LEEWAY_S <= 60  # RFC 8725 §3.10 leaves it to us; a minute at the most
    now = int(time.time())
    # expired a second ago, not valid for another second: both within the leeway
    for changes in ({"exp": now - 1}, {"nbf": now + 1}):
        token = hs256(claims(api_sqlite, admin_id, **changes))
        assert call(api_sqlite, bearer(token)).status_code == 200, changes
    late = hs256(claims(api_sqlite, admin_id, nbf=now + LEEWAY_S + 60, exp=now + 3600))
    assert_rejected(call(api_sqlite, bearer(late)))


@pytest.fixture
def sinkhole() -> Iterator[tuple[str, list[bytes]]]:
    """A TCP listener on 127.0.0.1 that records the first bytes of every connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    seen.append(conn.recv(1024))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_keys_named_in_the_header_are_never_fetched_or_used(
    api_sqlite: ApiHarness, admin_id: str, sinkhole: tuple[str, list[bytes]]
) -> None:
    url, seen = sinkhole
    attacker = _rsa()
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    secret = b"attacker-chosen-hmac-secret-0123456789abcdef"
    oct_jwk = {"kty": "oct", "k": b64(secret)}
    payload = claims(api_sqlite, admin_id)
    forged = {
        "jku": jwt.encode(payload, attacker, "RS256", {**AT_JWT, "jku": f"{url}/jwks.json"}),
        "x5u": jwt.encode(payload, attacker, "RS256", {**AT_JWT, "x5u": f"{url}/cert.pem"}),
        "jwk rsa": jwt.encode(payload, attacker, "RS256", {**AT_JWT, "jwk": public_jwk}),
        "jwk oct": hs256(payload, secret, {**AT_JWT, "jwk": oct_jwk}),
        # signed with the "key" an attacker points kid at: /dev/null's bytes (PyJWT refuses an
        # empty key, so the HMAC is made by hand)
        "kid path": craft(
            {"alg": "HS256", **AT_JWT, "kid": "../../../../dev/null"},
            payload,
            lambda msg: hmac.new(b"", msg, hashlib.sha256).digest(),
        ),
        "jku hs256": hs256(payload, secret, {**AT_JWT, "jku": f"{url}/jwks.json"}),
    }
    for name, token in forged.items():
        r = call(api_sqlite, bearer(token))
        assert r.status_code == 401, name
        assert_rejected(r)
    time.sleep(0.3)  # a fetch the server started would have connected by now
    assert seen == [], "the server fetched a key from a URL in a token's header"


def test_a_tampered_payload_is_rejected(api_sqlite: ApiHarness) -> None:
    admin, _ = api_sqlite.clients.create("tamper-admin", ["admin"])
    token = api_sqlite.token("viewer")  # a real token for a viewer client
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"sub": admin.id}, {"roles": ["admin"]}, {"exp": body["exp"] + 86400}):
        forged = f"{head}.{b64(json.dumps({**body, **change}).encode())}.{sig}"
        assert_rejected(call(api_sqlite, bearer(forged)))
    assert call(api_sqlite, bearer(token)).status_code == 403  # the untouched token: a viewer


def test_a_revoked_clients_token_stops_working(api_sqlite: ApiHarness) -> None:
    client, secret = api_sqlite.clients.create("soon-revoked", ["admin"])
    token = api_sqlite.issue_token(client.id, secret)
    assert call(api_sqlite, bearer(token)).status_code == 200
    assert api_sqlite.clients.revoke(client.id)
    deadline = time.monotonic() + 5  # the authenticator trusts a client's status for 2 s
    while (r := call(api_sqlite, bearer(token))).status_code == 200:
        assert time.monotonic() < deadline, "a revoked client's token still works"
        time.sleep(0.2)
    assert_rejected(r)
    with api_sqlite.http() as h:
        again = h.post(
            "/api/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.id,
                "client_secret": secret,
            },
        )
    assert again.status_code == 401


def test_no_credentials_is_401_with_a_challenge(api_sqlite: ApiHarness) -> None:
    r = call(api_sqlite, {})
    assert_rejected(r)
    assert r.json()["code"] == "missing_credentials"


def test_a_valid_api_key_works_and_carries_its_roles(api_sqlite: ApiHarness) -> None:
    admin_key = api_sqlite.api_key("admin")
    viewer_key = api_sqlite.api_key("viewer")
    assert call(api_sqlite, {"X-API-Key": admin_key}).status_code == 200
    assert call(api_sqlite, {"X-API-Key": viewer_key}).status_code == 403


@pytest.mark.parametrize(
    "key",
    [
        "nope",
        "jk_",
        "jk_abc",
        "jk_.secret",
        "jk_jc_abc.",
        "jk_" + "a" * 600 + ".b",
        "jk_jc_0000000000000000.this-client-does-not-exist",
    ],
    ids=["no-prefix", "prefix-only", "no-secret", "no-id", "empty-secret", "too-long", "unknown"],
)
def test_malformed_and_unknown_api_keys_are_rejected(api_sqlite: ApiHarness, key: str) -> None:
    r = call(api_sqlite, {"X-API-Key": key})
    assert_rejected(r)
    assert r.json()["code"] == "invalid_api_key"


def test_a_wrong_secret_a_revoked_key_and_an_oauth_secret_as_key_are_rejected(
    api_sqlite: ApiHarness,
) -> None:
    key = api_sqlite.api_key("admin")
    client_id = key[3:].split(".")[0]
    assert_rejected(call(api_sqlite, {"X-API-Key": f"jk_{client_id}.wrong-secret"}))
    oauth, secret = api_sqlite.clients.create("oauth-not-key", ["admin"])
    assert_rejected(call(api_sqlite, {"X-API-Key": f"jk_{oauth.id}.{secret}"}))
    unused = api_sqlite.api_key("admin")
    assert api_sqlite.clients.revoke(unused[3:].split(".")[0])
    assert_rejected(call(api_sqlite, {"X-API-Key": unused}))
    # and an API key's secret cannot be swapped for a token
    with api_sqlite.http() as h:
        r = h.post(
            "/api/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": key.split(".", 1)[1],
            },
        )
    assert r.status_code == 401


def test_a_used_api_key_stops_working_soon_after_revocation(api_sqlite: ApiHarness) -> None:
    key = api_sqlite.api_key("admin")
    assert call(api_sqlite, {"X-API-Key": key}).status_code == 200
    assert api_sqlite.clients.revoke(key[3:].split(".")[0])
    deadline = time.monotonic() + 5
    while (r := call(api_sqlite, {"X-API-Key": key})).status_code == 200:
        assert time.monotonic() < deadline, "a revoked API key still works"
        time.sleep(0.2)
    assert_rejected(r)


def test_only_the_hash_of_a_secret_is_stored(api: ApiHarness) -> None:
    key = api.api_key("ingest")
    client_id, secret = key[3:].split(".", 1)
    oauth, oauth_secret = api.clients.create("hash-check", ["viewer"])
    with api.ctx.store.begin() as conn:
        rows = {r.id: r._mapping for r in conn.execute(select(api_clients))}
    for cid, plain in ((client_id, secret), (oauth.id, oauth_secret)):
        row = rows[cid]
        assert row["secret_hash"] == "sha256$" + hashlib.sha256(plain.encode()).hexdigest()
        stored = " ".join(str(v) for v in row.values())
        assert plain not in stored
        assert plain[:12] not in stored
