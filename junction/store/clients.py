"""API clients: OAuth2 client-credentials clients and API keys, secrets hashed at rest.

Secrets are 256-bit random values generated here, so a fast hash (SHA-256) is enough: there is
nothing to brute-force, unlike a human password (ADR-0008).  Only the hash is stored; the secret
is shown once, when the client is created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from sqlalchemy import select, update

from junction.core.errors import ConfigError
from junction.store.repo import Store
from junction.store.tables import api_clients

KINDS = ("oauth", "apikey")
API_KEY_PREFIX = "jk_"


@dataclass(frozen=True)
class ApiClient:
    """A stored client (never with its secret)."""

    id: str
    name: str
    kind: str
    roles: tuple[str, ...]
    rate_limit: str | None
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    """The at-rest form of a generated secret."""
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


def split_api_key(key: str) -> tuple[str, str] | None:
    """``jk_<client id>.<secret>`` → (client id, secret); None when malformed."""
    if not key.startswith(API_KEY_PREFIX) or "." not in key:
        return None
    client_id, _, secret = key[len(API_KEY_PREFIX) :].partition(".")
    if not client_id or not secret or len(key) > 512:
        return None
    return client_id, secret


def _row_to_client(row: object) -> ApiClient:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiClient(
        id=m["id"],
        name=m["name"],
        kind=m["kind"],
        roles=tuple(orjson.loads(m["roles"])),
        rate_limit=m["rate_limit"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
    )


class ClientStore:
    """API clients in the store."""

    def __init__(self, store: Store) -> None:
        """Use ``store``'s engine."""
        self.store = store

    def create(
        self,
        name: str,
        roles: list[str] | tuple[str, ...],
        *,
        kind: str = "oauth",
        rate_limit: str | None = None,
        known_roles: tuple[str, ...] = ("admin", "operator", "viewer", "ingest"),
    ) -> tuple[ApiClient, str]:
        """Create a client; return it and its secret (an API key for ``apikey`` clients)."""
        if kind not in KINDS:
            raise ConfigError(f"client kind must be one of {', '.join(KINDS)}")
        unknown = sorted(set(roles) - set(known_roles))
        if unknown or not roles:
            raise ConfigError(f"roles must be a non-empty subset of {', '.join(known_roles)}")
        client_id = "jc_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        with self.store.begin() as conn:
            conn.execute(
                api_clients.insert().values(
                    id=client_id,
                    name=name,
                    kind=kind,
                    secret_hash=hash_secret(secret),
                    roles=orjson.dumps(sorted(set(roles))).decode(),
                    rate_limit=rate_limit,
                    created_at=now,
                )
            )
        client = self.get(client_id)
        assert client is not None
        shown = f"{API_KEY_PREFIX}{client_id}.{secret}" if kind == "apikey" else secret
        return client, shown

    def get(self, client_id: str) -> ApiClient | None:
        """The client with ``client_id``, revoked or not."""
        with self.store.begin() as conn:
            row = conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
        return _row_to_client(row) if row is not None else None

    def verify(self, client_id: str, secret: str, *, kind: str) -> ApiClient | None:
        """The active client of ``kind`` whose secret matches; None otherwise."""
        with self.store.begin() as conn:
            row = conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
        if row is None:
            secret_matches(secret, hash_secret("x"))  # same work either way
            return None
        client = _row_to_client(row)
        if not secret_matches(secret, row._mapping["secret_hash"]):
            return None
        if client.kind != kind or not client.active:
            return None
        return client

    def list(self, *, include_revoked: bool = False) -> list[ApiClient]:
        """All clients, oldest first."""
        q = select(api_clients).order_by(api_clients.c.created_at)
        if not include_revoked:
            q = q.where(api_clients.c.revoked_at.is_(None))
        with self.store.begin() as conn:
            return [_row_to_client(r) for r in conn.execute(q)]

    def revoke(self, client_id: str) -> bool:
        """Revoke a client; its API key and tokens stop working.  False if unknown."""
        with self.store.begin() as conn:
            n = conn.execute(
                update(api_clients)
                .where(api_clients.c.id == client_id, api_clients.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        return bool(n)

    def touch(self, client_id: str) -> None:
        """Record that the client was used (best effort, for operators)."""
        with self.store.begin() as conn:
            conn.execute(
                update(api_clients)
                .where(api_clients.c.id == client_id)
                .values(last_used_at=time.time())
            )
