"""Idempotency keys for POST requests (the ``Idempotency-Key`` header), over ``idempotency_keys``.

One row per (scope, key); the scope is the client id plus the route, so two clients never share
keys.  A request first *claims* its key:

* no row, or an expired one (older than ``ttl_s``, 24 h) → the caller owns the key and runs;
* a finished row with the same body hash → the stored answer is replayed, byte for byte;
* a row with another body hash → ``mismatch`` (the API answers 422);
* a pending row younger than ``lease_s`` → ``in_flight`` (409: the first request is running);
* a pending row older than the lease → its owner crashed; the caller takes the claim over.

Every change is a compare-and-set on ``created_at`` (the claim's token), so two takers cannot
both win and a worker whose claim was taken over cannot overwrite the new owner's answer.  The
claim does not make the work itself exactly-once: callers derive the work's own dedupe key from
(scope, key), so a take-over after a crash finds the first attempt's effects (ADR-0010).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

import orjson
from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from junction.core.errors import InternalError
from junction.store.repo import Store
from junction.store.tables import idempotency_keys as k

LEASE_S = 60.0
TTL_S = 24 * 3600.0
PURGE_EVERY_S = 60.0
MAX_KEY_LEN = 255

ClaimKind = Literal["new", "reclaimed", "replay", "mismatch", "in_flight"]


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key.

    Attributes:
        kind: ``new`` / ``reclaimed`` (the caller owns the key and must ``complete`` or
            ``release`` it), ``replay`` (``status_code`` and ``response`` hold the first answer),
            ``mismatch`` (same key, other body) or ``in_flight`` (retry after ``retry_after``).
        token: the claim's token (its ``created_at``), for ``complete`` and ``release``.
    """

    kind: ClaimKind
    token: float = 0.0
    status_code: int | None = None
    response: bytes | None = None
    retry_after: float = 0.0

    @property
    def owned(self) -> bool:
        """Whether the caller holds the key and must do the work."""
        return self.kind in ("new", "reclaimed")


def body_hash(data: object) -> str:
    """SHA-256 of the canonical JSON of a parsed body (key order and spacing do not matter)."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def derived_id(*parts: str) -> str:
    """A stable 128-bit hex id for the work a key stands for (e.g. an inbound event id)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


class IdempotencyKeys:
    """Claims, answers and expiry of idempotency keys in one store."""

    def __init__(self, store: Store, *, lease_s: float = LEASE_S, ttl_s: float = TTL_S) -> None:
        """Keys in ``store``; claims go stale after ``lease_s``, keys expire after ``ttl_s``."""
        self.store = store
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self._purged_at = 0.0

    def claim(self, scope: str, key: str, digest: str, *, now: float | None = None) -> Claim:
        """Claim ``key`` in ``scope`` for a body whose hash is ``digest``."""
        now = time.time() if now is None else now
        self._maybe_purge(now)
        insert = pg_insert if self.store.dialect == "postgresql" else sqlite_insert
        fresh = {
            "body_hash": digest,
            "state": "pending",
            "status_code": None,
            "response": None,
            "created_at": now,
            "expires_at": now + self.ttl_s,
        }
        stmt = (
            insert(k)
            .values(scope=scope, key=key, **fresh)
            .on_conflict_do_nothing()
            .returning(k.c.key)  # rowcount is not reliable on every driver
        )
        this = and_(k.c.scope == scope, k.c.key == key)
        # a row can vanish (released, purged) or change between our reads: retry a few times
        for _ in range(5):
            with self.store.begin() as conn:
                if conn.execute(stmt).first() is not None:
                    return Claim("new", token=now)
                row = conn.execute(select(k).where(this)).mappings().first()
                if row is None:
                    continue
                same = and_(this, k.c.created_at == row["created_at"], k.c.state == row["state"])
                if row["expires_at"] <= now:
                    if conn.execute(update(k).where(same).values(**fresh)).rowcount == 1:
                        return Claim("new", token=now)
                    continue
                if not hmac.compare_digest(str(row["body_hash"]), digest):
                    return Claim("mismatch")
                if row["state"] == "done":
                    return Claim(
                        "replay",
                        status_code=int(row["status_code"]),
                        response=bytes(row["response"] or b""),
                    )
                held_until = float(row["created_at"]) + self.lease_s
                if held_until > now:
                    return Claim("in_flight", retry_after=held_until - now)
                if conn.execute(update(k).where(same).values(created_at=now)).rowcount == 1:
                    return Claim("reclaimed", token=now)
        raise InternalError("an idempotency key kept changing under its claim", code="idem_churn")

    def complete(self, scope: str, key: str, token: float, status_code: int, body: bytes) -> bool:
        """Store the answer for a claim; False if the claim was taken over meanwhile."""
        with self.store.begin() as conn:
            n = conn.execute(
                update(k)
                .where(
                    k.c.scope == scope,
                    k.c.key == key,
                    k.c.created_at == token,
                    k.c.state == "pending",
                )
                .values(state="done", status_code=status_code, response=body)
            ).rowcount
        return bool(n)

    def release(self, scope: str, key: str, token: float) -> None:
        """Give a claim up (the work failed without an answer worth replaying)."""
        with self.store.begin() as conn:
            conn.execute(
                delete(k).where(
                    k.c.scope == scope,
                    k.c.key == key,
                    k.c.created_at == token,
                    k.c.state == "pending",
                )
            )

    def purge(self, *, now: float | None = None) -> int:
        """Delete expired keys; return how many."""
        now = time.time() if now is None else now
        with self.store.begin() as conn:
            return int(conn.execute(delete(k).where(k.c.expires_at <= now)).rowcount or 0)

    def _maybe_purge(self, now: float) -> None:
        if now - self._purged_at >= PURGE_EVERY_S:
            self._purged_at = now
            self.purge(now=now)
