"""API clients: OAuth2 client-credentials clients and API keys, secrets hashed at rest.

Secrets are 256-bit random values generated here, so a fast hash (SHA-256) is enough: there is
nothing to brute-force, unlike a human password (ADR-0008).  Only the hash is stored; the secret
is shown once, when the client is created.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import orjson
from limits import RateLimitItem, parse_many
from sqlalchemy import select, update

from junction.core.errors import ConfigError
from junction.store.audit import AuditEntry, AuditLog
from junction.store.repo import Store
from junction.store.tables import api_clients

KINDS = ("oauth", "apikey")
# ids are made here ("jc_" + 16 hex); anything else (NUL bytes, 10 kB of junk) is unknown
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
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


def check_rate_limit(rate: str) -> RateLimitItem:
    """The parsed limit; ConfigError unless ``rate`` is one positive rate such as ``100/second``."""
    try:
        items = parse_many(rate)
    except ValueError as exc:
        raise ConfigError(f"invalid rate limit {rate!r} (e.g. '100/second')") from exc
    if len(items) != 1 or items[0].amount < 1:
        raise ConfigError(f"invalid rate limit {rate!r}: give one positive rate, e.g. 100/second")
    return items[0]


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
        actor: str = "system",
        request_id: str | None = None,
    ) -> tuple[ApiClient, str]:
        """Create a client; return it and its secret (an API key for ``apikey`` clients).

        The creation is audited (``client.create`` by ``actor``) in the same transaction.
        """
        if kind not in KINDS:
            raise ConfigError(f"client kind must be one of {', '.join(KINDS)}")
        unknown = sorted(set(roles) - set(known_roles))
        if unknown or not roles:
            raise ConfigError(f"roles must be a non-empty subset of {', '.join(known_roles)}")
        if not name.strip() or len(name) > 128:
            raise ConfigError("a client name must be 1 to 128 characters")
        if rate_limit is not None:
            check_rate_limit(rate_limit)
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
            detail = {"kind": kind, "roles": sorted(set(roles)), "rate_limit": rate_limit}
            entry = AuditEntry(actor, "client.create", client_id, request_id, detail, at=now)
            AuditLog(self.store).append_in(conn, [entry])
        client = self.get(client_id)
        assert client is not None
        shown = f"{API_KEY_PREFIX}{client_id}.{secret}" if kind == "apikey" else secret
        return client, shown

    def get(self, client_id: str) -> ApiClient | None:
        """The client with ``client_id``, revoked or not."""
        if not CLIENT_ID.match(client_id):
            return None
        with self.store.begin() as conn:
            row = conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
        return _row_to_client(row) if row is not None else None

    def verify(self, client_id: str, secret: str, *, kind: str) -> ApiClient | None:
        """The active client of ``kind`` whose secret matches; None otherwise."""
        row = None
        if CLIENT_ID.match(client_id):  # a caller-typed id never reaches SQL unless it could exist
            with self.store.begin() as conn:
                q = select(api_clients).where(api_clients.c.id == client_id)
                row = conn.execute(q).first()
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

    def revoke(
        self, client_id: str, *, actor: str = "system", request_id: str | None = None
    ) -> bool:
        """Revoke a client; its API key and tokens stop working.  False if unknown or revoked.

        The revocation is audited (``client.revoke`` by ``actor``) in the same transaction.
        """
        now = time.time()
        with self.store.begin() as conn:
            n = conn.execute(
                update(api_clients)
                .where(api_clients.c.id == client_id, api_clients.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            if n:
                entry = AuditEntry(actor, "client.revoke", client_id, request_id, at=now)
                AuditLog(self.store).append_in(conn, [entry])
        return bool(n)

    def touch(self, client_id: str) -> None:
        """Record that the client was used (best effort, for operators)."""
        with self.store.begin() as conn:
            conn.execute(
                update(api_clients)
                .where(api_clients.c.id == client_id)
                .values(last_used_at=time.time())
            )
