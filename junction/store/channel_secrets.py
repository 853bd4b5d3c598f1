"""Webhook signing secrets rotated through the store, sealed at rest (ADR-0023).

A channel's config names its first secret (``secret``, from the environment or a file).  Once a
secret has been rotated through the store (``junction channels rotate-secret``, the API, the
dashboard), the store's secrets supersede the config's: the current one (``retires_at`` NULL)
and the ones rotated out, each signing until its ``retires_at``.  During that overlap every
delivery carries one ``v1,<sig>`` per active secret, so a receiver holding either the old or the
new secret verifies while it switches over.

Secrets are sealed with the store's encryption at rest (ADR-0021): AES-256-GCM under the data
key of the ``jx_channel_secrets`` subject, bound to the table, the row and the channel.  The data
key sits in ``data_keys`` like a person's, so ``junction keys rotate`` re-wraps it with the rest.
A store without encryption at rest refuses to rotate (``ConfigError`` saying how to turn it on):
a signing secret is never stored in clear.

``StoreSigningKeys`` is what the webhook channel asks before each send: the active keys of a
channel from a cache refreshed at most every few seconds (in a worker thread), or None when the
channel was never rotated (the config's secrets then sign).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update

from junction.core.errors import ConfigError, InternalError, JunctionError
from junction.core.logging import get_logger
from junction.store import tables as t
from junction.store.crypto import NONCE_BYTES, associated, open_blob, seal_text, split_text
from junction.store.repo import Store
from outbound.signing_keys import SigningKey
from outbound.webhook.config import WebhookConfig, generate_secret, secret_key_bytes

log = get_logger(__name__)

SUBJECT = "jx_channel_secrets"
TABLE = "channel_secrets"
DEFAULT_OVERLAP_S = 24 * 3600.0
MAX_OVERLAP_S = 30 * 24 * 3600.0
# how long a process trusts its copy of the store's secrets before reading them again
REFRESH_S = 5.0
_OVERLAP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# called inside the rotation's transaction (the audit entry goes there)
RotationAudit = Callable[[Connection, "RotatedSecret"], object] | None

ENCRYPTION_REQUIRED = (
    "rotating a signing secret needs encryption at rest, so the secret is never stored in "
    "clear: add a `privacy:` section to the config (e.g. `privacy: {kek: "
    "file:/var/lib/junction/kek}` or `kek: env:JUNCTION_KEK`) and run the command again"
)


@dataclass(frozen=True)
class RotatedSecret:
    """The outcome of a rotation.  ``secret`` is shown once and never logged (no repr)."""

    channel: str
    secret_id: str
    secret: str = field(repr=False)
    created_at: float
    overlap_s: float
    # the secrets that keep signing until their retirement: (id, origin, retires_at)
    retiring: tuple[tuple[str, str, float], ...] = ()

    def answer(self) -> dict[str, Any]:
        """The one answer that shows the secret (the API's body, the CLI's ``--json``)."""
        return {
            "channel": self.channel,
            "secret_id": self.secret_id,
            "secret": self.secret,
            "created_at": self.created_at,
            "overlap_s": self.overlap_s,
            "retiring": [
                {"id": sid, "origin": origin, "retires_at": at} for sid, origin, at in self.retiring
            ],
        }


@dataclass(frozen=True)
class SecretInfo:
    """One stored secret, without the secret."""

    id: str
    channel: str
    origin: str
    created_at: float
    retires_at: float | None


def parse_overlap(value: str | float) -> float:
    """Seconds from ``24h``, ``90m``, ``2d``, ``30s`` or a number of seconds (0 to 30 days).

    Raises:
        ConfigError: The value is not a duration, or is out of range.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _OVERLAP.match(value)
        if found is None:
            raise ConfigError(
                f"the overlap {value!r} is not a duration: use e.g. 24h, 90m, 2d or 3600"
            )
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if not 0 <= seconds <= MAX_OVERLAP_S:
        raise ConfigError("the overlap must be between 0 and 30 days")
    return seconds


def webhook_options(channels: Mapping[str, Mapping[str, Any]], channel: str) -> WebhookConfig:
    """The config of webhook channel ``channel`` (validated).

    Raises:
        ConfigError: No such channel, or it is not a webhook channel (only those sign).
    """
    options = channels.get(channel)
    if options is None:
        raise ConfigError(f"no channel {channel!r} in the config", code="channel_not_found")
    if channel.split(".", 1)[0] != "webhook":
        raise ConfigError(
            f"channel {channel!r} does not sign its deliveries: only webhook channels have a "
            "signing secret",
            code="channel_not_signed",
        )
    opts = {k: v for k, v in options.items() if k not in ("type", "max_in_flight")}
    try:
        return WebhookConfig.model_validate(opts)
    except ValueError as exc:
        raise ConfigError(f"channel {channel!r} is misconfigured", details=str(exc)) from None


def _aad(secret_id: str, channel: str) -> bytes:
    return associated(TABLE, f"{secret_id}\x1f{channel}", SUBJECT)


def _lock_channel(conn: Connection, channel: str) -> None:
    """Serialize rotations of one channel (PostgreSQL: an advisory lock; SQLite: the write lock)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"{TABLE}\x1f{channel}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        # a write first: SQLite takes its write lock before this transaction reads anything
        conn.execute(
            update(t.channel_secrets)
            .where(t.channel_secrets.c.channel == channel, t.channel_secrets.c.id == "")
            .values(origin=t.channel_secrets.c.origin)
        )


def rotate_secret(
    store: Store,
    channel: str,
    config: WebhookConfig,
    *,
    overlap_s: float = DEFAULT_OVERLAP_S,
    now: float | None = None,
    audit: RotationAudit = None,
) -> RotatedSecret:
    """Make a new current secret for ``channel``; the ones in use sign until now + overlap.

    The first rotation of a channel stores the config's active secrets as the ones rotated out
    (from then on the config's secrets are ignored).  Secrets retired before ``now`` are deleted.
    One transaction, with the caller's audit entry.

    Args:
        store: The hub's store (its encryption at rest must be on).
        channel: The configured channel name, e.g. ``webhook.sales``.
        config: The channel's config (``webhook_options``).
        overlap_s: How long the secrets in use keep signing beside the new one (0: stop now).
        now: The rotation's time (tests inject one); default the current time.
        audit: Called in the transaction with the outcome (it must not record the secret).

    Returns:
        The new secret (shown once) and the secrets that retire at the end of the overlap.

    Raises:
        ConfigError: The store's encryption at rest is off, or the overlap is out of range.
        KeyUnavailableError: The store's key-encryption key is missing.
        UnavailableError: The store is unavailable.
    """
    overlap_s = parse_overlap(overlap_s)
    at = time.time() if now is None else now
    retire_at = at + overlap_s
    privacy = store.privacy()
    if privacy is None:
        raise ConfigError(ENCRYPTION_REQUIRED, code="encryption_required")
    c = t.channel_secrets.c
    secret = generate_secret()
    secret_id = "cs_" + secrets.token_hex(12)
    with store.begin() as conn:
        _lock_channel(conn, channel)
        aead = privacy.keyring.keys(conn, [SUBJECT], create=True).get(SUBJECT)
        if aead is None:
            raise InternalError("the channel secrets' data key is missing or destroyed")
        had_current = conn.execute(
            update(t.channel_secrets)
            .where(c.channel == channel, c.retires_at.is_(None))
            .values(retires_at=retire_at)
        ).rowcount
        # secrets already rotated out keep their own retirement, unless it comes later
        conn.execute(
            update(t.channel_secrets)
            .where(c.channel == channel, c.retires_at > retire_at)
            .values(retires_at=retire_at)
        )
        rows: list[dict[str, Any]] = []
        if not had_current:
            # first rotation: the config's active secrets become the ones rotated out
            for old, expires_at in config.signing_secrets():
                ends = retire_at if expires_at is None else min(expires_at, retire_at)
                if ends > at:
                    rows.append(_row(aead, channel, old, "config", at, ends))
        rows.append(_row(aead, channel, secret, "rotated", at, None, secret_id))
        conn.execute(delete(t.channel_secrets).where(c.channel == channel, c.retires_at <= at))
        conn.execute(insert(t.channel_secrets), rows)
        retiring = tuple(
            (str(r.id), str(r.origin), float(r.retires_at))
            for r in conn.execute(
                select(c.id, c.origin, c.retires_at)
                .where(c.channel == channel, c.retires_at.is_not(None))
                .order_by(c.created_at, c.id)
            )
        )
        out = RotatedSecret(channel, secret_id, secret, at, overlap_s, retiring)
        if audit is not None:
            audit(conn, out)
    return out


def _row(
    aead: Any,
    channel: str,
    secret: str,
    origin: str,
    created_at: float,
    retires_at: float | None,
    secret_id: str | None = None,
) -> dict[str, Any]:
    sid = secret_id or "cs_" + secrets.token_hex(12)
    sealed = seal_text(
        aead, SUBJECT, os.urandom(NONCE_BYTES), secret.encode("utf-8"), _aad(sid, channel)
    )
    return {
        "id": sid,
        "channel": channel,
        "sealed": sealed,
        "origin": origin,
        "created_at": created_at,
        "retires_at": retires_at,
    }


def list_secrets(store: Store, channel: str | None = None) -> list[SecretInfo]:
    """The stored secrets (never their values), newest first."""
    c = t.channel_secrets.c
    q = select(c.id, c.channel, c.origin, c.created_at, c.retires_at).order_by(
        c.channel, c.created_at.desc(), c.id
    )
    if channel is not None:
        q = q.where(c.channel == channel)
    with store.begin() as conn:
        return [SecretInfo(*row) for row in conn.execute(q)]


def signing_secrets(store: Store, now: float | None = None) -> dict[str, list[SecretInfo]]:
    """Per channel, the stored secrets that still sign at ``now``: current first, then the
    ones a rotation's overlap keeps (latest retirement first).  A channel never rotated is
    absent: its config's secret signs alone."""
    at = time.time() if now is None else now
    out: dict[str, list[SecretInfo]] = {}
    for s in list_secrets(store):
        if s.retires_at is None or s.retires_at > at:
            out.setdefault(s.channel, []).append(s)
    for found in out.values():
        found.sort(key=lambda s: (s.retires_at is not None, -(s.retires_at or s.created_at)))
    return out


def load_secrets(store: Store) -> dict[str, list[tuple[str, str, float | None]]]:
    """Every stored secret, opened: channel → [(id, secret, retires_at)], current first.

    Raises:
        KeyUnavailableError: Secrets are stored but the store's KEK is missing.
        DecryptionError: A sealed secret was altered or moved to another row or channel.
    """
    c = t.channel_secrets.c
    with store.begin() as conn:
        rows = conn.execute(
            select(c.id, c.channel, c.sealed, c.retires_at).order_by(
                c.channel, c.retires_at.is_not(None), c.created_at.desc(), c.id
            )
        ).all()
        if not rows:
            return {}
        privacy = store.privacy(conn)
        if privacy is None:
            raise ConfigError(ENCRYPTION_REQUIRED, code="encryption_required")
        aead = privacy.keyring.require(conn, [SUBJECT])[SUBJECT]
    out: dict[str, list[tuple[str, str, float | None]]] = {}
    for sid, channel, sealed, retires_at in rows:
        subject, blob = split_text(sealed)
        if subject != SUBJECT:
            raise InternalError("a channel secret is sealed under another subject")
        value = open_blob(aead, blob, _aad(sid, channel), table=TABLE).decode("utf-8")
        out.setdefault(channel, []).append((sid, value, retires_at))
    return out


class StoreSigningKeys:
    """The webhook channel's signing keys from the store, refreshed every ``refresh_s``.

    A rotation made by another process (the CLI, the API of another replica) reaches the
    delivery worker within ``refresh_s``; until then the secrets in use keep signing, and they
    keep signing for the whole overlap, so no receiver sees a gap.
    """

    def __init__(
        self,
        store: Store,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read ``store``'s secrets at most every ``refresh_s`` seconds of ``clock``."""
        self.store = store
        self.refresh_s = refresh_s
        self._clock = clock
        self._loaded_at = float("-inf")
        self._keys: dict[str, list[SigningKey]] = {}
        self._decoded: dict[str, bytes] = {}  # secret id -> key bytes
        self._pending: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"StoreSigningKeys(channels={sorted(self._keys)})"

    def refresh(self) -> None:
        """Read the store's secrets now (blocking: one small query)."""
        found = load_secrets(self.store)
        decoded: dict[str, bytes] = {}
        keys: dict[str, list[SigningKey]] = {}
        for channel, rows in found.items():
            for sid, value, retires_at in rows:
                key = self._decoded.get(sid)
                if key is None:
                    key = secret_key_bytes(value)
                decoded[sid] = key
                keys.setdefault(channel, []).append((key, retires_at))
        self._decoded = decoded
        self._keys = keys
        self._loaded_at = self._clock()

    def keys_now(self, channel: str) -> Sequence[SigningKey] | None:
        """The cached keys of ``channel`` (None: never rotated), refreshing first when stale."""
        if self._clock() - self._loaded_at >= self.refresh_s:
            self.refresh()
        return self._keys.get(channel)

    def _refresh_or_keep(self) -> None:
        """``refresh``; once loaded, a failed refresh keeps the keys it has (and says so)."""
        try:
            self.refresh()
        except JunctionError as exc:
            if self._loaded_at == float("-inf"):
                raise
            # a store hiccup must not stop signing: the cached keys are at most one rotation
            # behind, and the secrets they hold keep signing through the overlap anyway
            log.warning("channel secrets not refreshed", error=type(exc).__name__)
            self._loaded_at = self._clock()

    async def signing_keys(self, channel: str) -> Sequence[SigningKey] | None:
        """The active keys of ``channel`` with their retirement; None: use the config's.

        Raises:
            ConfigError: Secrets are stored but cannot be opened (no KEK), on the first read.
            UnavailableError: The store is unavailable on the first read.
        """
        if self._clock() - self._loaded_at >= self.refresh_s:
            pending = self._pending
            if pending is None or pending.done():
                pending = asyncio.ensure_future(asyncio.to_thread(self._refresh_or_keep))
                self._pending = pending
            # one refresh for every send that finds the cache stale; a cancelled send does
            # not cancel it for the others
            await asyncio.shield(pending)
        return self._keys.get(channel)
