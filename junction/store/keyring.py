"""Data keys per subject, wrapped by the key-encryption key, and the store's encryption settings.

A *subject* is a person as the store knows them: the keyed pseudonym (``junction.core.pseudonym``)
of their normalized email, else their phone, else the record's source key.  The pseudonym key
for subjects is the store's own (random, wrapped by the KEK in ``privacy_settings``), so every
process that holds the KEK computes the same subject ids, and a dump of the database without
the KEK cannot test a guessed email against them.

Each subject has one AES-256 data key in ``data_keys``, wrapped by the KEK.  Keys for a write
batch's new subjects are drawn from one ``os.urandom`` call, wrapped and inserted in one
statement; unwrapped keys are cached per process (the key bytes, not ``AESGCM`` objects: one
of those holds ~2.4 KB of cipher state; at most ``cache_size`` keys, least recently used out
first).  Erasing a subject sets ``wrapped`` to NULL: the key is gone (crypto-shredding
every copy of the subject's ciphertext, also in backups and topics), and the row stays as a
tombstone that makes later writes of that subject drop it.

``rotate`` re-wraps every data key and the subject key under a new KEK in one transaction; the
data itself is not re-encrypted.  Afterwards the old KEK opens nothing in the store.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from base64 import urlsafe_b64encode
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, bindparam, select, update

from junction.core.errors import DecryptionError, KeyUnavailableError, SubjectErasedError
from junction.core.pseudonym import PREFIX, TOKEN_BYTES, normalize
from junction.store import tables as t
from junction.store.crypto import KEY_BYTES, NONCE_BYTES, KekProvider, LocalKek

SETTINGS_ID = 1
_SHA256_BLOCK = 64
_CHUNK = 500  # subjects per IN (...) lookup
_SUBJECT_CONTEXT = b"junction subject key"
DEFAULT_KEY_CACHE = 100_000  # keys per process: ~190 B each (subject, key, wrapped key)
_GROUP = 64  # data-key rows per multi-row INSERT on SQLite
_INSERT_KEYS_GROUPED = (  # constant text (no value is spliced in); the values are bound
    "INSERT OR IGNORE INTO data_keys (subject, wrapped, kek_id, created_at) VALUES "  # noqa: S608
    + ", ".join(["(?, ?, ?, ?)"] * _GROUP)
)


class KeyCache:
    """Unwrapped data keys by subject: at most ``size``, least recently used out first.

    An entry is one ``bytes``: the 32-byte key, then the wrapped key as stored (so a key row
    that changed under us, e.g. re-wrapped, is told from the one we hold).  ``AESGCM`` objects
    are made from it when a batch needs them; caching those instead costs ~2.4 KB a key (1M
    subjects: 2.4 GB).  Every cache in the process is registered, so an erasure evicts the
    subject from all of them (``evict_everywhere``).
    """

    __slots__ = ("__weakref__", "_d", "_lock", "size")

    def __init__(self, size: int) -> None:
        """Hold at most ``size`` keys (0: none)."""
        self.size = max(0, size)
        self._d: dict[str, bytes] = {}
        self._lock = threading.Lock()
        _CACHES.add(self)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, subject: object) -> bool:
        return subject in self._d

    def get(self, subject: str) -> tuple[bytes, bytes] | None:
        """``(key, wrapped)`` of ``subject``, now the most recently used; None when absent."""
        d = self._d
        with self._lock:
            entry = d.pop(subject, None)
            if entry is None:
                return None
            d[subject] = entry  # re-inserted: the end of the dict is the most recent
        return entry[:KEY_BYTES], entry[KEY_BYTES:]

    def put(self, subject: str, key: bytes, wrapped: bytes) -> None:
        """Remember ``subject``'s key (and its stored wrapped form); evict past ``size``."""
        self.put_many([(subject, key, wrapped)])

    def put_many(self, entries: Iterable[tuple[str, bytes, bytes]]) -> None:
        """``put`` for a batch of keys."""
        if self.size <= 0:
            return
        d = self._d
        with self._lock:
            for subject, key, wrapped in entries:
                d.pop(subject, None)
                d[subject] = key + wrapped
            over = len(d) - self.size
            if over > 0:
                for old in list(_first(d, over)):
                    del d[old]

    def discard(self, subjects: Iterable[str]) -> None:
        """Forget ``subjects`` (erased, or their key row is not what we hold)."""
        d = self._d
        with self._lock:
            for s in subjects:
                d.pop(s, None)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._d.clear()


_CACHES: weakref.WeakSet[KeyCache] = weakref.WeakSet()


def _first(d: dict[str, bytes], n: int) -> Iterator[str]:
    it = iter(d)
    for _ in range(n):
        yield next(it)


def evict_everywhere(subjects: Collection[str]) -> None:
    """Forget ``subjects``' keys in every key cache of this process (an erasure)."""
    for cache in list(_CACHES):
        cache.discard(subjects)


class Keyring:
    """The store's subject key and data keys under one KEK."""

    def __init__(
        self,
        kek: KekProvider,
        subject_key: bytes,
        *,
        kek_source: str,
        cache_size: int = DEFAULT_KEY_CACHE,
    ) -> None:
        """Use ``kek`` (whose id matches the store's) and the unwrapped ``subject_key``."""
        self.kek = kek
        self.kek_source = kek_source
        self._subject_key = subject_key
        block = subject_key.ljust(_SHA256_BLOCK, b"\0")  # keys <= one block, as HMAC pads them
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._cache = KeyCache(cache_size)

    @property
    def cache_size(self) -> int:
        """How many unwrapped data keys this keyring keeps at most."""
        return self._cache.size

    @property
    def cached(self) -> int:
        """How many unwrapped data keys this keyring holds now."""
        return len(self._cache)

    def holds(self, subject: str) -> bool:
        """Whether ``subject``'s data key is in this keyring's cache."""
        return subject in self._cache

    def __repr__(self) -> str:
        return f"Keyring(kek_id={self.kek.key_id!r}, cached={len(self._cache)})"

    # settings

    @classmethod
    def enable(
        cls,
        conn: Connection,
        kek: KekProvider,
        *,
        kek_source: str,
        cache_size: int = DEFAULT_KEY_CACHE,
    ) -> Keyring:
        """Turn encryption on for the store (once), or check ``kek`` against the store's KEK.

        Raises:
            KeyUnavailableError: The store's keys are wrapped by another KEK (e.g. ``kek`` is
                the one before a rotation).
        """
        row = _settings(conn)
        if row is None:
            subject_key = os.urandom(KEY_BYTES)
            values = {
                "id": SETTINGS_ID,
                "kek_source": kek_source,
                "kek_id": kek.key_id,
                "subject_key": kek.wrap(subject_key, _SUBJECT_CONTEXT),
                "updated_at": time.time(),
            }
            # two processes enabling at once: one insert wins, the other reads the winner's row
            from junction.store.repo import insert_ignore_sql

            sql = insert_ignore_sql(conn.dialect.name, t.privacy_settings, tuple(values))
            if conn.exec_driver_sql(sql, tuple(values.values())).rowcount:
                return cls(kek, subject_key, kek_source=kek_source, cache_size=cache_size)
            row = _settings(conn)
            assert row is not None
        ring = cls.load(conn, kek, row, cache_size=cache_size)
        if row["kek_source"] != kek_source:
            conn.execute(
                update(t.privacy_settings)
                .where(t.privacy_settings.c.id == SETTINGS_ID)
                .values(kek_source=kek_source, updated_at=time.time())
            )
            ring.kek_source = kek_source
        return ring

    @classmethod
    def load(
        cls,
        conn: Connection,
        kek: KekProvider,
        row: Any | None = None,
        *,
        cache_size: int = DEFAULT_KEY_CACHE,
    ) -> Keyring:
        """The keyring of a store whose encryption is on, opened with ``kek``."""
        row = row if row is not None else _settings(conn)
        if row is None:
            raise KeyUnavailableError("encryption at rest is not enabled for this store")
        if row["kek_id"] != kek.key_id:
            raise KeyUnavailableError(
                f"the configured key-encryption key (id {kek.key_id}) is not the one this "
                f"store's keys are wrapped with (id {row['kek_id']}); after `junction keys "
                "rotate`, configure the new KEK"
            )
        subject_key = kek.unwrap(bytes(row["subject_key"]), _SUBJECT_CONTEXT)
        return cls(kek, subject_key, kek_source=str(row["kek_source"]), cache_size=cache_size)

    # subjects

    def subject(self, kind: str, value: object) -> str:
        """The subject id of ``value`` as personal data of ``kind`` (email, phone, source_key).

        The same token as ``Pseudonymizer(subject_key).of(kind, value)`` (RFC 2104 HMAC-SHA256
        from precomputed pad states: this runs once per stored record, and the one-shot
        ``hmac.digest`` costs twice as much per call).
        """
        text = normalize(kind, value if isinstance(value, str) else str(value))
        inner = self._inner.copy()
        inner.update(f"{kind}\x1f{text}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac = outer.digest()
        return PREFIX + urlsafe_b64encode(mac[:TOKEN_BYTES]).decode("ascii").rstrip("=")

    # data keys

    def keys(
        self, conn: Connection, subjects: Collection[str], *, create: bool
    ) -> dict[str, AESGCM | None]:
        """The data key (as an ``AESGCM``) of each subject; None for an erased subject.

        With ``create``, subjects without a key get one (``draft`` then ``settle``).  Without
        it, cached keys are used as they are and subjects without a key row are left out.
        """
        if create:
            provisional, drafts, held = self.draft(subjects)
            return self.settle(conn, provisional, drafts, held)
        out: dict[str, AESGCM | None] = {}
        ask = []
        get = self._cache.get
        for s in subjects:
            hit = get(s)
            if hit is None:
                ask.append(s)
            else:
                out[s] = AESGCM(hit[0])
        out.update(self._lookup(conn, ask, lock=False))
        return out

    def draft(
        self, subjects: Collection[str]
    ) -> tuple[dict[str, AESGCM], dict[str, tuple[bytes, bytes]], dict[str, tuple[bytes, bytes]]]:
        """Keys to seal with before the transaction: cached ones, and new ones (not stored).

        Returns the key of every subject, ``(key, wrapped)`` of the new ones and of the cached
        ones; ``settle`` stores the new ones and says which keys the store has instead (another
        writer's, or None for an erased subject).  Costs no query: a batch is sealed outside
        the store's write lock.
        """
        get = self._cache.get
        provisional: dict[str, AESGCM] = {}
        held: dict[str, tuple[bytes, bytes]] = {}
        new = []
        for s in subjects:
            hit = get(s)
            if hit is None:
                new.append(s)
            else:
                provisional[s] = AESGCM(hit[0])
                held[s] = hit
        drafts: dict[str, tuple[bytes, bytes]] = {}
        if new:
            per = KEY_BYTES + NONCE_BYTES
            rnd = os.urandom(per * len(new))
            keys = [rnd[i : i + KEY_BYTES] for i in range(0, per * len(new), per)]
            contexts = [s.encode("ascii") for s in new]
            kek = self.kek
            if isinstance(kek, LocalKek):
                nonces = [rnd[i + KEY_BYTES : i + per] for i in range(0, per * len(new), per)]
                wrapped_keys = kek.wrap_many(keys, contexts, nonces)
            else:
                wrapped_keys = [kek.wrap(k, c) for k, c in zip(keys, contexts, strict=True)]
            for s, key, wrapped in zip(new, keys, wrapped_keys, strict=True):
                provisional[s] = AESGCM(key)
                drafts[s] = (key, wrapped)
        return provisional, drafts, held

    def settle(
        self,
        conn: Connection,
        provisional: dict[str, AESGCM],
        drafts: dict[str, tuple[bytes, bytes]],
        held: dict[str, tuple[bytes, bytes]],
    ) -> dict[str, AESGCM | None]:
        """Store the drafted keys and check the cached ones, in the write transaction.

        ``drafts`` and ``held`` are ``(key, wrapped)`` of the new and the cached subjects (from
        ``draft``).  Returns the key to use per subject: the provisional one when it stands,
        the stored one when another writer stored a key first, None when the subject is erased.
        """
        out: dict[str, AESGCM | None] = dict(provisional)
        if held:
            # an erasure elsewhere shows here; a cached key whose row is missing (its writer
            # rolled back) is stored again
            found = self._lookup(conn, list(held), lock=True, rows=True)
            erased = []
            for s, entry in held.items():
                row = found.get(s)
                if row is None:
                    drafts = {**drafts, s: entry}
                elif row[0] is None:
                    out[s] = None
                    erased.append(s)
            if erased:
                self._cache.discard(erased)
        if drafts:
            inserted = self._insert(conn, drafts)
            if inserted != len(drafts):
                # another writer (or an erasure) stored some of these first: theirs stand
                stored = self._lookup(conn, list(drafts), lock=False, rows=True)
                for s, (wrapped, kek_id_) in stored.items():
                    if wrapped is None:
                        out[s] = None
                    elif bytes(wrapped) != drafts[s][1]:
                        out[s] = self._open(s, wrapped, kek_id_)
            self._cache.put_many(
                (s, key, wrapped)
                for s, (key, wrapped) in drafts.items()
                if out[s] is not None and out[s] is provisional.get(s)
            )
        return out

    def _insert(self, conn: Connection, drafts: dict[str, tuple[bytes, bytes]]) -> int:
        """Insert key rows (existing subjects are left as they are); return how many went in.

        In subject order: the primary key's B-tree is walked from left to right once instead
        of at random (random pseudonyms), which keeps its pages in cache.  On SQLite, in
        multi-row statements of ``_GROUP`` rows.
        """
        from junction.store.repo import insert_ignore_sql

        now = time.time()
        kek_id = self.kek.key_id
        rows = [(s, drafts[s][1], kek_id, now) for s in sorted(drafts)]
        cols = ("subject", "wrapped", "kek_id", "created_at")
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        inserted = 0
        try:
            done = 0
            if conn.dialect.name == "sqlite" and len(rows) >= _GROUP:
                done = len(rows) // _GROUP * _GROUP
                for at in range(0, done, _GROUP):
                    cur.execute(
                        _INSERT_KEYS_GROUPED, [v for row in rows[at : at + _GROUP] for v in row]
                    )
                    inserted += cur.rowcount
            if done < len(rows):
                cur.executemany(
                    insert_ignore_sql(conn.dialect.name, t.data_keys, cols), rows[done:]
                )
                inserted += cur.rowcount
        finally:
            cur.close()
        return inserted

    def _lookup(
        self, conn: Connection, subjects: list[str], *, lock: bool, rows: bool = False
    ) -> dict[str, Any]:
        """Key rows of ``subjects``: opened keys (None: erased), or raw (wrapped, kek_id)."""
        out: dict[str, Any] = {}
        c = t.data_keys.c
        for at in range(0, len(subjects), _CHUNK):
            q = select(c.subject, c.wrapped, c.kek_id).where(
                c.subject.in_(subjects[at : at + _CHUNK])
            )
            if lock and conn.dialect.name == "postgresql":
                q = q.with_for_update(read=True)  # an erasure in flight: wait for it, see it
            for subject, wrapped, kek_id in conn.execute(q):
                if rows:
                    out[subject] = (wrapped, kek_id)
                else:
                    out[subject] = None if wrapped is None else self._open(subject, wrapped, kek_id)
        return out

    def _open(self, subject: str, wrapped: bytes, kek_id: str | None) -> AESGCM:
        wrapped = bytes(wrapped)
        hit = self._cache.get(subject)
        if hit is not None and hit[1] == wrapped:
            return AESGCM(hit[0])
        if kek_id != self.kek.key_id:
            raise KeyUnavailableError(
                f"a data key is wrapped by another key-encryption key (id {kek_id}); "
                "finish `junction keys rotate` or configure the KEK it names"
            )
        try:
            key = self.kek.unwrap(wrapped, subject.encode("ascii"))
            aead = AESGCM(key)
        except KeyUnavailableError:
            # the row names our KEK, yet it does not open: the key row was altered
            raise DecryptionError("a data key failed its integrity check") from None
        except ValueError:
            raise DecryptionError("a data key has the wrong length") from None
        self._cache.put(subject, key, wrapped)
        return aead

    def require(self, conn: Connection, subjects: Collection[str]) -> dict[str, AESGCM]:
        """The keys of ``subjects`` for reading; an erased or unknown subject raises."""
        found = self.keys(conn, subjects, create=False)
        out: dict[str, AESGCM] = {}
        for s in subjects:
            if s not in found:
                raise DecryptionError("stored personal data names a subject with no data key")
            aead = found[s]
            if aead is None:
                raise SubjectErasedError(
                    "this data belongs to an erased subject; its key is destroyed"
                )
            out[s] = aead
        return out

    def mark(self, conn: Connection, subjects: Collection[str], now: float) -> None:
        """Start erasing ``subjects``: lock their key rows; tombstone subjects without one.

        Writers of the same subjects wait for the erasure's commit (the row lock on
        PostgreSQL, the write lock on SQLite) and then find them erased.
        """
        c = t.data_keys.c
        subjects = list(subjects)
        for at in range(0, len(subjects), _CHUNK):
            conn.execute(
                update(t.data_keys)
                .where(c.subject.in_(subjects[at : at + _CHUNK]))
                .values(erased_at=now)
            )
        from junction.store.repo import insert_ignore_sql

        cols = ("subject", "wrapped", "kek_id", "created_at", "erased_at")
        sql = insert_ignore_sql(conn.dialect.name, t.data_keys, cols)
        for s in subjects:
            conn.exec_driver_sql(sql, (s, None, None, now, now))

    def shred(self, conn: Connection, subjects: Collection[str]) -> int:
        """Destroy the data keys of ``subjects`` (tombstones stay); return how many."""
        now = time.time()
        self.mark(conn, subjects, now)
        c = t.data_keys.c
        subjects = list(subjects)
        n = 0
        for at in range(0, len(subjects), _CHUNK):
            n += conn.execute(
                update(t.data_keys)
                .where(c.subject.in_(subjects[at : at + _CHUNK]), c.wrapped.is_not(None))
                .values(wrapped=None, kek_id=None, erased_at=now)
            ).rowcount
        evict_everywhere(subjects)  # every keyring of this process; erase() again after commit
        return n

    def rotate(self, conn: Connection, new_kek: KekProvider, *, new_source: str) -> int:
        """Re-wrap every data key and the subject key under ``new_kek``; return how many keys.

        Runs in the caller's transaction: a failure leaves every key under the old KEK.
        """
        if new_kek.key_id == self.kek.key_id:
            raise KeyUnavailableError("the new key-encryption key is the current one")
        settings = t.privacy_settings.c
        # take the settings row first: two rotations (or an enable) do not interleave
        conn.execute(
            update(t.privacy_settings)
            .where(settings.id == SETTINGS_ID)
            .values(updated_at=time.time())
        )
        c = t.data_keys.c
        after = ""
        done = 0
        upd = (
            update(t.data_keys)
            .where(c.subject == bindparam("s"))
            .values(wrapped=bindparam("w"), kek_id=bindparam("k"))
        )
        while True:
            rows = conn.execute(
                select(c.subject, c.wrapped, c.kek_id)
                .where(c.subject > after, c.wrapped.is_not(None))
                .order_by(c.subject)
                .limit(2000)
            ).all()
            if not rows:
                break
            params = []
            for subject, wrapped, kek_id in rows:
                if kek_id != self.kek.key_id:
                    raise KeyUnavailableError(
                        f"a data key is wrapped by an unknown key-encryption key (id {kek_id})"
                    )
                ctx = subject.encode("ascii")
                key = self.kek.unwrap(bytes(wrapped), ctx)
                params.append({"s": subject, "w": new_kek.wrap(key, ctx), "k": new_kek.key_id})
            conn.execute(upd, params)
            done += len(rows)
            after = rows[-1][0]
        conn.execute(
            update(t.privacy_settings)
            .where(settings.id == SETTINGS_ID)
            .values(
                kek_id=new_kek.key_id,
                kek_source=new_source,
                subject_key=new_kek.wrap(self._subject_key, _SUBJECT_CONTEXT),
                updated_at=time.time(),
            )
        )
        self.kek = new_kek
        self.kek_source = new_source
        self._cache.clear()
        return done


def _settings(conn: Connection) -> Any | None:
    return (
        conn.execute(select(t.privacy_settings).where(t.privacy_settings.c.id == SETTINGS_ID))
        .mappings()
        .first()
    )


def settings_row(conn: Connection) -> dict[str, Any] | None:
    """The store's encryption settings (``kek_source``, ``kek_id``...), or None when off."""
    row = _settings(conn)
    return None if row is None else dict(row)
