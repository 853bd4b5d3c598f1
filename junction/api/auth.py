"""Authentication: OAuth2 client-credentials JWTs (PyJWT) and API keys, checked against the store.

The algorithm is fixed server-side (HS256); a token's header cannot choose it, so ``alg: none`` and
key-confusion tokens fail, and no key is ever taken or fetched from a header (``jku``, ``x5u``,
``jwk``, ``kid`` are ignored).  Tokens are typed as access tokens (RFC 9068 §2.1: ``typ:
at+jwt``) and a token of another type (an ID token's ``JWT``, or none) is refused, so a JWT
minted for another purpose with the same key is never taken for one (RFC 8725 §3.11).
``exp``, ``iat``, ``iss``, ``aud`` and ``sub`` are required, with a clock leeway of
:data:`LEEWAY_S` (at most 60 s).  Every
request re-checks that the client still exists and is not revoked, and takes its roles from the
store (cached for ``CACHE_S``), so a revoke takes effect within seconds, not at token expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from fastapi import Request

from junction.api.context import ApiContext
from junction.api.policy import Principal
from junction.core.errors import AuthError, ConfigError
from junction.core.keyfile import MIN_KEY_BYTES, read_or_create_key
from junction.pipeline.config import ApiConfig
from junction.pipeline.state import state_dir as state_dir  # re-exported (moved there)
from junction.store.clients import ApiClient, ClientStore, split_api_key

ALGORITHM = "HS256"
CACHE_S = 2.0  # how long a client's status is trusted before the store is asked again
LEEWAY_S = 5
# the JOSE type of our access tokens (RFC 9068 §2.1), and the forms a verifier accepts (§4):
# media types compare case-insensitively, and "application/" may be left out (RFC 7515 §4.1.9)
JOSE_TYPE = "at+jwt"
_ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# a token we issue is ~400 bytes; anything far larger is refused before it is parsed
MAX_TOKEN_CHARS = 4096
SIGNING_KEY_FILE = "api-signing.key"


def resolve_signing_key(api: ApiConfig, state: Path) -> bytes:
    """The configured key, or a random one kept (0600) in ``state`` across restarts."""
    if api.signing_key is not None:
        key = api.signing_key.get_secret_value().encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"api.signing_key must be at least {MIN_KEY_BYTES} bytes")
        return key
    return read_or_create_key(state / SIGNING_KEY_FILE)


# Verifying an HS256 token with its claims costs ~40 us, a tenth of a scoring request: tokens are
# immutable, so one that verified is remembered (by its exact bytes) until it expires.
VERIFIED_CACHE_SIZE = 4096
_VERIFIED: dict[str, tuple[TokenIssuer, dict[str, Any]]] = {}


@dataclass(frozen=True)
class TokenIssuer:
    """Issues and verifies the API's access tokens."""

    key: bytes
    issuer: str
    audience: str
    ttl_s: int

    def issue(self, client: ApiClient, *, now: float | None = None) -> tuple[str, int]:
        """A signed token for ``client`` and its lifetime in seconds."""
        iat = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.id,
            "roles": list(client.roles),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"typ": JOSE_TYPE})
        return token, self.ttl_s

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; AuthError for anything not issued by us and still valid."""
        hit = _VERIFIED.get(token)
        if hit is not None and hit[0] is self and time.time() < hit[1]["exp"] + LEEWAY_S:
            return hit[1]  # verified before by this issuer and not expired since
        try:
            decoded = jwt.decode_complete(
                token,
                self.key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the access token has expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(
                "the access token is not valid", details=type(exc).__name__, code="invalid_token"
            ) from exc
        typ = decoded["header"].get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            # signed with our key but not an access token (an ID token, or untyped)
            raise AuthError(
                "the access token is not valid", details="token type", code="invalid_token"
            )
        claims: dict[str, Any] = decoded["payload"]
        if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
            _VERIFIED.clear()
        _VERIFIED[token] = (self, claims)
        return claims


class StoreAuthenticator:
    """Bearer JWTs and ``X-API-Key`` keys, resolved to the client's current roles."""

    def __init__(self, clients: ClientStore, issuer: TokenIssuer) -> None:
        """Check credentials against ``clients``; tokens against ``issuer``."""
        self.clients = clients
        self.issuer = issuer
        self._cache: dict[str, tuple[float, ApiClient | None]] = {}
        self._keys: dict[str, tuple[float, ApiClient | None]] = {}

    @classmethod
    def from_context(cls, ctx: ApiContext) -> StoreAuthenticator:
        """Build from the hub's configuration and store."""
        api = ctx.cfg.api
        key = resolve_signing_key(api, state_dir(ctx.cfg))
        issuer = TokenIssuer(key, api.issuer, api.audience, api.token_ttl_s)
        return cls(ClientStore(ctx.store), issuer)

    # store reads run in a worker thread: a busy SQLite (a batch commit holding the write lock)
    # must delay only the requests that need the store, never the event loop
    async def _client(self, client_id: str) -> ApiClient | None:
        now = time.monotonic()
        hit = self._cache.get(client_id)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        client = await asyncio.to_thread(self.clients.get, client_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[client_id] = (now, client)
        return client

    async def _api_key_client(self, api_key: str) -> ApiClient | None:
        # keyed by a digest of the whole key, so the cache never holds a usable secret
        digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        parts = split_api_key(api_key)
        if parts is None:
            raise AuthError("the API key is malformed", code="invalid_api_key")
        client = await asyncio.to_thread(self.clients.verify, parts[0], parts[1], kind="apikey")
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (now, client)
        return client

    def forget(self, client_id: str) -> None:
        """Drop a cached client (after a revoke through this process)."""
        self._cache.pop(client_id, None)
        self._keys.clear()

    async def authenticate(self, request: Request) -> Principal:
        """The caller, or AuthError."""
        auth = request.headers.get("authorization")
        api_key = request.headers.get("x-api-key")
        if auth:
            scheme, _, token = auth.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError("use `Authorization: Bearer <token>`", code="invalid_token")
            if len(token) > MAX_TOKEN_CHARS:
                raise AuthError("the access token is not valid", code="invalid_token")
            claims = self.issuer.verify(token)
            client = await self._client(str(claims["sub"]))
            if client is None or not client.active:
                raise AuthError("the client is unknown or revoked", code="invalid_token")
            # roles come from the store, so a role removed takes effect before the token expires
            return Principal(client.id, frozenset(client.roles), "jwt", client.rate_limit)
        if api_key:
            client = await self._api_key_client(api_key.strip())
            if client is None:
                raise AuthError("the API key is not valid", code="invalid_api_key")
            return Principal(client.id, frozenset(client.roles), "apikey", client.rate_limit)
        raise AuthError("credentials are required", code="missing_credentials")

    def token_for(self, client_id: str, secret: str) -> tuple[str, int]:
        """Client-credentials grant: a token for a valid oauth client, else AuthError."""
        client = self.clients.verify(client_id, secret, kind="oauth")
        if client is None:
            raise AuthError("client authentication failed", code="invalid_client")
        self.clients.touch(client.id)  # once per token, so operators see which clients are live
        return self.issuer.issue(client)
