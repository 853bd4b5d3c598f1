"""A verified token is remembered for speed, but never past its expiry or for another key."""

from __future__ import annotations

import time

import pytest

from junction.api import auth
from junction.api.auth import TokenIssuer
from junction.core.errors import AuthError
from junction.store.clients import ApiClient

CLIENT = ApiClient("jc_0123456789abcdef", "t", "oauth", ("viewer",), None, 0.0, None, None)


def test_a_remembered_token_still_expires() -> None:
    issuer = TokenIssuer(b"k" * 48, "junction", "junction-api", 60)
    fresh, _ = issuer.issue(CLIENT)
    assert issuer.verify(fresh)["sub"] == CLIENT.id
    assert fresh in auth._VERIFIED
    # a token that verified when it was fresh and has expired since: the cache must not serve it
    old, _ = issuer.issue(CLIENT, now=time.time() - 3600)
    claims = {"sub": CLIENT.id, "exp": int(time.time()) - 3600 + 60}
    auth._VERIFIED[old] = (issuer, claims)
    with pytest.raises(AuthError) as err:
        issuer.verify(old)
    assert err.value.code == "token_expired"


def test_a_token_remembered_by_one_issuer_is_not_trusted_by_another() -> None:
    first = TokenIssuer(b"a" * 48, "junction", "junction-api", 60)
    other = TokenIssuer(b"b" * 48, "junction", "junction-api", 60)
    token, _ = first.issue(CLIENT)
    first.verify(token)
    with pytest.raises(AuthError):
        other.verify(token)
