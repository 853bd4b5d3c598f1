"""Data keys per subject, wrapped by the key-encryption key, and the store's encryption settings.

A *subject* is a person as the store knows them: the keyed pseudonym (``junction.core.pseudonym``)
of their normalized email, else their phone, else the record's source key.  The pseudonym key
for subjects is the store's own (random, wrapped by the KEK in ``privacy_settings``), so every
process that holds the KEK computes the same subject ids, and a dump of the database without
the KEK cannot test a guessed email against them.

Each person's AES-256 data keys are found by a time-ordered integer id that every sealed value
names (``JX2:<subject>:<id>:...``; ADR-0024).  Keys made since migration 0012 live in *key pages*
(ADR-0026): the new people of one write batch share one ``key_pages`` row whose id is a multiple of
``PAGE_SLOTS`` (a key's id is the page id plus its slot), listing the slots' subjects and holding
their keys end to end, wrapped by the KEK in one call (the page id and the subjects as associated
data).  A batch appends one row instead of one per person.  Keys are drawn from ``os.urandom`` and
paged before the write transaction; unwrapped keys are cached per process by subject (the key
bytes and id, not ``AESGCM`` objects: one of those holds ~2.4 KB of cipher state; at most
``cache_size`` keys, least recently used out first), so a person's next record is sealed under the
key their last one used.  A process that meets a person with a cold cache gives them a new key
(there is no subject index to search: it would cost every batch the random page writes this design
removes); erasure destroys every key of the subject (a scan, as for records).  The keys made
between migrations 0011 and 0012 stay rows of ``subject_keys`` (found by id as well).

Erasing a subject sets ``wrapped`` to NULL in every key row of the subject and empties its slots
in every key page (zeroed, the page wrapped again): the key is gone, crypto-shredding every copy
of the subject's ciphertext, also in backups and topics.  It also adds
the subject to ``erased_subjects``, the small table every write checks: later writes of that
subject drop it.

``data_keys`` (one key per subject, found by subject) keeps the keys made before migration 0011
(values sealed as ``JX1:<subject>:...``) and the keys of system subjects (the channel secrets,
``keys``/``require``).

``rotate`` re-wraps every data key (rows and pages) and the subject key under a new KEK in one
transaction; the data itself is not re-encrypted.  Afterwards the old KEK opens nothing in the
store.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import weakref
from collections.abc import Collection, Iterable
from itertools import islice
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, bindparam, func, select, update

from junction.core.errors import (
    DecryptionError,
    InternalError,
    KeyUnavailableError,
    SubjectErasedError,
)
from junction.core.pseudonym import PREFIX, TOKEN_BYTES, normalize
from junction.store import batch_seal
from junction.store import tables as t
from junction.store.crypto import KEY_BYTES, KekProvider
from junction.store.engine import raw_cursor

SETTINGS_ID = 1
_CHUNK = 500  # subjects or ids per IN (...) lookup
_SCAN = 200  # key pages per read of an erasure's scan
_SUBJECT_CONTEXT = b"junction subject key"
DEFAULT_KEY_CACHE = 100_000  # keys per process: ~110 B each (subject, key, id)
_PAGE_COLS = ("id", "subjects", "wrapped", "kek_id", "created_at")
_PAGE_BITS = 12
PAGE_SLOTS = 1 << _PAGE_BITS  # keys per page at most; a page's id is a multiple of this
_SLOT_MASK = PAGE_SLOTS - 1
_PAGE_CONTEXT = b"junction key page"
_ANY_ERASED = "SELECT 1 FROM erased_subjects LIMIT 1"
_EPOCH_MS = 1_577_836_800_000  # 2020-01-01 UTC: key ids are (ms since then) << _ID_LOW_BITS | n
_ID_LOW_BITS = 22
_ID_BYTES = 8
LEGACY = 0  # the key id of a cached ``data_keys`` key (found by subject)

# a key to seal with: the AES-GCM of the data key and its id in ``subject_keys``
KeyRef = tuple[AESGCM, int]
# a data key as bytes and its id (what the batch sealer takes)
KeyBytes = tuple[bytes, int]


class Page:
    """A page of data keys: a ``key_pages`` row, drafted before the write transaction or read.

    Slot ``i`` holds the key of ``subjects[i]`` (its id is ``id + i``); an empty subject is an
    erased slot, whose key bytes are zeros.
    """

    __slots__ = ("blob", "id", "subjects", "text", "wrapped")

    def __init__(self, page_id: int, subjects: list[str], blob: bytes, wrapped: bytes) -> None:
        """The page ``page_id``: its slots' subjects and keys (``blob``), and ``wrapped``."""
        self.id = page_id
        self.subjects = subjects
        self.blob = blob
        self.text = ",".join(subjects)
        self.wrapped = wrapped
        if len(blob) != KEY_BYTES * len(subjects) or self.text.count(",") != len(subjects) - 1:
            raise InternalError("a key page's subjects and keys do not match")

    @classmethod
    def sealed(cls, page_id: int, subjects: list[str], blob: bytes, kek: KekProvider) -> Page:
        """A new page, ``blob`` (the slots' keys end to end) wrapped under ``kek``."""
        page = cls(page_id, subjects, blob, b"")
        page.wrapped = kek.wrap(blob, page_context(page_id, page.text))
        return page

    def __repr__(self) -> str:
        return f"Page(id={self.id}, slots={len(self.subjects)})"

    def key(self, slot: int) -> bytes:
        """The data key in ``slot``."""
        return self.blob[slot * KEY_BYTES : (slot + 1) * KEY_BYTES]

    def without(
        self, subjects: Collection[str], kek: KekProvider, *, keep_empty: bool = False
    ) -> Page | None:
        """This page with ``subjects``' slots emptied and their keys zeroed, wrapped again
        (None when no slot is left, unless ``keep_empty``)."""
        subs = [("" if s in subjects else s) for s in self.subjects]
        if not keep_empty and not any(subs):
            return None
        blob = b"".join(
            bytes(KEY_BYTES) if s in subjects else self.key(i) for i, s in enumerate(self.subjects)
        )
        return Page.sealed(self.id, subs, blob, kek)


class NewKeys:
    """A batch's drafted keys: each new subject's ``(key, id)`` and the pages holding them."""

    __slots__ = ("keys", "pages")

    def __init__(self, keys: dict[str, KeyBytes], pages: list[Page]) -> None:
        """Hold ``keys`` and their ``pages``."""
        self.keys = keys
        self.pages = pages

    def __repr__(self) -> str:
        return f"NewKeys(keys={len(self.keys)}, pages={len(self.pages)})"


def page_context(page_id: int, subjects: str) -> bytes:
    """The associated data a key page is wrapped with: its id and its slots' subjects."""
    return b"%b\x1f%d\x1f%b" % (_PAGE_CONTEXT, page_id, subjects.encode("ascii"))


class KeyCache:
    """Unwrapped data keys by subject: at most ``size``, least recently used out first.

    An entry is one ``bytes``: the 32-byte key, its id (8 bytes; ``LEGACY`` for a ``data_keys``
    key), then, for a ``data_keys`` key, the wrapped key as stored (so a key row that changed
    under us is told from the one we hold).  ``AESGCM`` objects are made from it when a batch
    needs them; caching those instead costs ~2.4 KB a key (1M subjects: 2.4 GB).  Every cache
    in the process is registered, so an erasure evicts the subject from all of them
    (``evict_everywhere``).
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

    def get(self, subject: str) -> tuple[bytes, int, bytes] | None:
        """``(key, id, wrapped)`` of ``subject``, now the most recently used; None when absent.

        ``wrapped`` is empty for a ``subject_keys`` key."""
        d = self._d
        with self._lock:
            entry = d.pop(subject, None)
            if entry is None:
                return None
            d[subject] = entry  # re-inserted: the end of the dict is the most recent
        return (
            entry[:KEY_BYTES],
            int.from_bytes(entry[KEY_BYTES : KEY_BYTES + _ID_BYTES]),
            entry[KEY_BYTES + _ID_BYTES :],
        )

    def get_many(self, subjects: Iterable[str]) -> dict[str, tuple[bytes, int, bytes]]:
        """``get`` of each of ``subjects`` that is held (a batch's lookups, one lock)."""
        d = self._d
        with self._lock:
            hits = [(s, e) for s in subjects if (e := d.pop(s, None)) is not None]
            d.update(hits)  # re-inserted: the most recently used
        return {
            s: (
                e[:KEY_BYTES],
                int.from_bytes(e[KEY_BYTES : KEY_BYTES + _ID_BYTES]),
                e[KEY_BYTES + _ID_BYTES :],
            )
            for s, e in hits
        }

    def put(self, subject: str, key: bytes, key_id: int, wrapped: bytes = b"") -> None:
        """Remember ``subject``'s key; evict past ``size``."""
        self.put_many([(subject, key, key_id, wrapped)])

    def put_many(self, entries: Iterable[tuple[str, bytes, int, bytes]]) -> None:
        """``put`` for a batch of keys."""
        if self.size > 0:
            self._put([(s, k + i.to_bytes(_ID_BYTES) + w) for s, k, i, w in entries])

    def put_keys(self, keys: Iterable[tuple[str, KeyBytes]]) -> None:
        """``put`` for a batch of key ids' keys (``(subject, (key, id))``)."""
        if self.size > 0:
            self._put([(s, k + i.to_bytes(_ID_BYTES)) for s, (k, i) in keys])

    def _put(self, new: list[tuple[str, bytes]]) -> None:
        d = self._d
        with self._lock:
            for s, _ in new:
                if s in d:
                    del d[s]  # put again at the end: the most recently used
            d.update(new)
            over = len(d) - self.size
            if over > 0:
                for old in list(islice(d, over)):
                    del d[old]

    def put_if_absent(self, subject: str, key: bytes, key_id: int, wrapped: bytes = b"") -> None:
        """``put`` unless ``subject`` has an entry (a reader's key does not displace a
        writer's current one)."""
        if subject not in self._d:
            self.put(subject, key, key_id, wrapped)

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
_IDS_LOCK = threading.Lock()
_last_id = 0


def evict_everywhere(subjects: Collection[str]) -> None:
    """Forget ``subjects``' keys in every key cache of this process (an erasure)."""
    for cache in list(_CACHES):
        cache.discard(subjects)


def new_page_ids(n: int) -> list[int]:
    """``n`` fresh key page ids: time-ordered, increasing within the process, multiples of
    ``PAGE_SLOTS`` (a page's keys are numbered ``id + slot``).

    The high bits are milliseconds since 2020; below them a random page number (two processes
    drawing in the same millisecond rarely meet; a page id another writer took is detected at
    insert and the page's keys drawn again).
    """
    global _last_id
    ms = int(time.time() * 1000) - _EPOCH_MS
    spread = secrets.randbits(_ID_LOW_BITS - 1 - _PAGE_BITS) << _PAGE_BITS
    base = (ms << _ID_LOW_BITS) | spread
    with _IDS_LOCK:
        base = max(base, (_last_id | _SLOT_MASK) + 1)
        _last_id = base + n * PAGE_SLOTS - 1
    return [base + i * PAGE_SLOTS for i in range(n)]


def subject_message(kind: str, value: object) -> bytes:
    """What the subject id of ``value`` as personal data of ``kind`` is the HMAC of."""
    text = value if isinstance(value, str) else str(value)
    return f"{kind}\x1f{normalize(kind, text)}".encode()


def email_message(value: str) -> bytes:
    """``subject_message("email", value)``, with the common case (an ASCII address) inline."""
    if value.isascii():
        return b"email\x1f" + value.strip().lower().encode()
    return subject_message("email", value)


def key_context(subject: str, key_id: int) -> bytes:
    """The associated data a ``subject_keys`` key is wrapped with: its subject and id."""
    return f"{subject}\x1f{key_id}".encode("ascii")


_LEGACY_COLS = ("subject", "wrapped", "kek_id", "created_at")


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

        The same token as ``Pseudonymizer(subject_key).of(kind, value)`` (RFC 2104
        HMAC-SHA256, base64url of its first ``TOKEN_BYTES``).
        """
        return self.subjects([(kind, value)])[0]

    def subjects(self, pairs: Iterable[tuple[str, object]]) -> list[str]:
        """``subject(kind, value)`` of every ``(kind, value)`` pair (a batch's records), with
        one HMAC call for the batch (``batch_seal.hmac_tokens``)."""
        return self.tokens([subject_message(kind, value) for kind, value in pairs])

    def tokens(self, messages: list[bytes]) -> list[str]:
        """The subject ids of ``subject_message``s, with one HMAC call for the batch."""
        return batch_seal.hmac_tokens(self._subject_key, messages, PREFIX, TOKEN_BYTES)

    # data keys of people (subject_keys)

    def draft(
        self, subjects: Collection[str]
    ) -> tuple[dict[str, KeyBytes], NewKeys, dict[str, KeyBytes]]:
        """Keys to seal with before the transaction: cached ones, and new ones (not stored).

        Returns the key of every subject as ``(key, id)``, the new ones (in pages, wrapped) and
        the cached ones; ``settle`` stores the new ones and says which subjects are erased.
        Costs no query: a batch is sealed outside the store's write lock.
        """
        hits = self._cache.get_many(subjects)
        held = {s: (h[0], h[1]) for s, h in hits.items() if h[1] != LEGACY}
        new = self._new_keys([s for s in subjects if s not in held])
        provisional = {**held, **new.keys}
        return provisional, new, held

    def _new_keys(self, subjects: list[str]) -> NewKeys:
        """Fresh keys for ``subjects``, ``PAGE_SLOTS`` to a page, each page wrapped once."""
        if not subjects:
            return NewKeys({}, [])
        rnd = os.urandom(KEY_BYTES * len(subjects))
        keys: dict[str, KeyBytes] = {}
        pages: list[Page] = []
        for n, page_id in enumerate(new_page_ids(-(-len(subjects) // PAGE_SLOTS))):
            lo = n * PAGE_SLOTS
            subs = subjects[lo : lo + PAGE_SLOTS]
            blob = rnd[lo * KEY_BYTES : (lo + len(subs)) * KEY_BYTES]
            for slot, s in enumerate(subs):
                keys[s] = (blob[slot * KEY_BYTES : (slot + 1) * KEY_BYTES], page_id + slot)
            pages.append(Page.sealed(page_id, subs, blob, self.kek))
        return NewKeys(keys, pages)

    def settled_keys(
        self, conn: Connection, subjects: Collection[str]
    ) -> dict[str, KeyBytes | None]:
        """``draft`` then ``settle`` in the transaction: the key to seal with per subject
        (None: the subject is erased)."""
        provisional, new, held = self.draft(subjects)
        return self.settle(conn, provisional, new, held)[0]

    def seal_keys(self, conn: Connection, subjects: Collection[str]) -> dict[str, KeyRef | None]:
        """``settled_keys`` as AES-GCM objects."""
        final = self.settled_keys(conn, subjects)
        return {s: None if k is None else (AESGCM(k[0]), k[1]) for s, k in final.items()}

    def settle(
        self,
        conn: Connection,
        provisional: dict[str, KeyBytes],
        new: NewKeys,
        held: dict[str, KeyBytes],
    ) -> tuple[dict[str, KeyBytes | None], set[str]]:
        """Store the drafted keys and check the cached ones, in the write transaction.

        Returns the key to use per subject (the provisional one when it stands, None when the
        subject is erased, a new one with another id when another writer took a drafted page's
        id first or a cached key is stored nowhere) and the subjects whose key is not the
        provisional one.
        """
        out: dict[str, KeyBytes | None] = dict(provisional)
        erased = self._erased(conn, list(provisional))
        changed = set(erased)
        pages = new.pages
        if erased:
            for s in erased:
                out[s] = None
            pages = [q for p in pages if (q := p.without(erased, self.kek)) is not None]
            held = {s: h for s, h in held.items() if s not in erased}
            self._cache.discard(erased)
        if held:
            gone, lost = self._check_held(conn, held)
            for s in gone:  # erased since (erased_subjects says so too)
                out[s] = None
            self._cache.discard(gone)
            # a cached key stored nowhere (the batch that drafted it rolled back, so no stored
            # value uses it): the subject gets a new one
            again = self._new_keys(lost)
            out.update(again.keys)
            pages = [*pages, *again.pages]
            changed.update(gone, lost)
        as_drafted = pages is new.pages
        stored: list[Page] = []
        while pages:
            taken = self._insert_pages(conn, pages)
            if taken:
                as_drafted = False
                stored.extend(p for p in pages if p.id not in taken)
            else:
                stored.extend(pages)
            lost = [s for p in pages if p.id in taken for s in p.subjects if s]
            changed.update(lost)
            again = self._new_keys(lost)
            out.update(again.keys)
            pages = again.pages
        if as_drafted:  # the common case: every drafted key went in as it was
            self._cache.put_keys(new.keys.items())
        else:
            self._cache.put_keys((s, k) for p in stored for s in p.subjects if (k := out.get(s)))
        return out, changed

    def _check_held(
        self, conn: Connection, held: dict[str, KeyBytes]
    ) -> tuple[list[str], list[str]]:
        """Which cached keys are destroyed (their subject erased) and which are stored nowhere.

        A key is stored when its page is (pages are written whole and never deleted; an erased
        subject is also in ``erased_subjects``, which ``settle`` checks first), else when its
        ``subject_keys`` row is.
        """
        pages = self._page_ids(conn, {kid & ~_SLOT_MASK for _, kid in held.values()})
        rest = {kid: s for s, (_, kid) in held.items() if kid & ~_SLOT_MASK not in pages}
        if not rest:
            return [], []
        rows = self._rows_by_id(conn, list(rest))
        gone, lost = [], []
        for kid, s in rest.items():
            row = rows.get(kid)
            if row is None or row[0] != s:
                lost.append(s)
            elif row[1] is None:
                gone.append(s)
        return gone, lost

    def _page_ids(self, conn: Connection, ids: Collection[int]) -> set[int]:
        """Which of ``ids`` are stored key pages."""
        return set(_by_ids(conn, t.key_pages.c.id, (), ids))

    def _insert_pages(self, conn: Connection, pages: list[Page]) -> set[int]:
        """Insert key pages (an id already taken is left as it is); return the ids of the
        pages another writer had stored first (theirs, not ours)."""
        from junction.store.repo import insert_ignore_sql

        now = time.time()
        kek_id = self.kek.key_id
        rows = [(p.id, p.text, p.wrapped, kek_id, now) for p in pages]
        with raw_cursor(conn) as cur:
            cur.executemany(insert_ignore_sql(conn.dialect.name, t.key_pages, _PAGE_COLS), rows)
            inserted = cur.rowcount
        if inserted == len(pages):
            return set()
        c = t.key_pages.c
        mine = {p.id: (p.text, p.wrapped) for p in pages}
        q = select(c.id, c.subjects, c.wrapped).where(c.id.in_(list(mine)))
        return {
            int(pid)
            for pid, text, wrapped in conn.execute(q)
            if (text, bytes(wrapped)) != mine[int(pid)]
        }

    def _erased(self, conn: Connection, subjects: list[str]) -> set[str]:
        """Which of ``subjects`` are erased.  On PostgreSQL, waits for an erasure in flight
        (it holds ``erased_subjects`` exclusively until its commit) and keeps the next one
        waiting until this transaction ends."""
        if conn.dialect.name == "postgresql":
            # its own statement: the next ones take a snapshot after the wait (READ COMMITTED)
            conn.exec_driver_sql("LOCK TABLE erased_subjects IN ROW SHARE MODE")
        e = t.erased_subjects.c
        # every write batch asks; the statement is constant text, run without SQLAlchemy's
        # compile step (most stores have erased nobody: the table is empty)
        if not subjects or conn.exec_driver_sql(_ANY_ERASED).first() is None:
            return set()
        out: set[str] = set()
        for at in range(0, len(subjects), _CHUNK):
            q = select(e.subject).where(e.subject.in_(subjects[at : at + _CHUNK]))
            out.update(conn.execute(q).scalars())
        return out

    def _rows_by_id(self, conn: Connection, ids: list[int]) -> dict[int, tuple[str, Any, Any]]:
        """``(subject, wrapped, kek_id)`` of the ``subject_keys`` rows with these ids."""
        c = t.subject_keys.c
        return _by_ids(conn, c.id, (c.subject, c.wrapped, c.kek_id), ids)

    def open_refs(
        self, conn: Connection, refs: Collection[tuple[str, int | None]]
    ) -> dict[tuple[str, int | None], AESGCM]:
        """The keys that sealed values name, for reading: ``(subject, key id)`` -> key.

        A key id of None is a value sealed before key ids (its key is found by subject).

        Raises:
            SubjectErasedError: A key is destroyed (its subject was erased).
            DecryptionError: A value names a key that does not exist, or another subject's.
        """
        out: dict[tuple[str, int | None], AESGCM] = {}
        legacy = [s for s, kid in refs if kid is None]
        if legacy:
            for s, aead in self.require(conn, legacy).items():
                out[(s, None)] = aead
        get = self._cache.get
        ask: set[tuple[str, int]] = set()
        for s, kid in refs:
            if kid is None:
                continue
            hit = get(s)
            if hit is not None and hit[1] == kid:
                out[(s, kid)] = AESGCM(hit[0])
            else:
                ask.add((s, kid))
        if not ask:
            return out
        rows = self._rows_by_id(conn, list({kid for _, kid in ask}))
        paged: list[tuple[str, int]] = []
        for s, kid in ask:
            row = rows.get(kid)
            if row is None or row[0] != s:
                paged.append((s, kid))  # not a key row of this subject: a page's key, if any
                continue
            _, wrapped, kek_id = row
            if wrapped is None:
                raise SubjectErasedError(
                    "this data belongs to an erased subject; its key is destroyed"
                )
            key = self._unwrap(key_context(s, kid), wrapped, kek_id)
            self._cache.put_if_absent(s, key, kid)
            out[(s, kid)] = AESGCM(key)
        if paged:
            for ref, key in self._paged_keys(conn, paged).items():
                self._cache.put_if_absent(ref[0], key, ref[1])
                out[ref] = AESGCM(key)
        return out

    def _paged_keys(
        self, conn: Connection, refs: list[tuple[str, int]]
    ) -> dict[tuple[str, int], bytes]:
        """The page keys ``refs`` name, each page opened once."""
        by_page: dict[int, list[tuple[str, int]]] = {}
        for s, kid in refs:
            by_page.setdefault(kid & ~_SLOT_MASK, []).append((s, kid))
        c = t.key_pages.c
        found = _by_ids(conn, c.id, (c.subjects, c.wrapped, c.kek_id), by_page)
        out: dict[tuple[str, int], bytes] = {}
        for pid, wanted in by_page.items():
            row = found.get(pid)
            if row is None:
                raise DecryptionError("stored personal data names a data key that is not stored")
            page = self._open_page(pid, *row)
            for s, kid in wanted:
                slot = kid - pid
                if slot >= len(page.subjects) or page.subjects[slot] not in (s, ""):
                    raise DecryptionError("stored personal data names another subject's data key")
                if not page.subjects[slot]:
                    raise SubjectErasedError(
                        "this data belongs to an erased subject; its key is destroyed"
                    )
                out[(s, kid)] = page.key(slot)
        return out

    def _open_page(self, page_id: int, text: str, wrapped: Any, kek_id: str | None) -> Page:
        """A stored key page, unwrapped (which checks its id and subjects list too)."""
        blob = self._unwrap(page_context(page_id, text), wrapped, kek_id, size=None)
        subjects = text.split(",")
        if len(blob) != KEY_BYTES * len(subjects):
            raise DecryptionError("a data key page has the wrong length")
        return Page(page_id, subjects, blob, bytes(wrapped))

    def _unwrap(
        self, context: bytes, wrapped: Any, kek_id: str | None, *, size: int | None = KEY_BYTES
    ) -> bytes:
        if kek_id != self.kek.key_id:
            raise KeyUnavailableError(
                f"a data key is wrapped by another key-encryption key (id {kek_id}); "
                "finish `junction keys rotate` or configure the KEK it names"
            )
        try:
            key = self.kek.unwrap(bytes(wrapped), context)
        except KeyUnavailableError:
            # the row names our KEK, yet it does not open: the key row was altered
            raise DecryptionError("a data key failed its integrity check") from None
        if size is not None and len(key) != size:
            raise DecryptionError("a data key has the wrong length")
        return key

    # data keys found by subject (data_keys: before migration 0011, and system subjects)

    def keys(
        self, conn: Connection, subjects: Collection[str], *, create: bool
    ) -> dict[str, AESGCM | None]:
        """The ``data_keys`` key (as an ``AESGCM``) of each subject; None for an erased one.

        With ``create``, subjects without a key get one.  Without it, subjects without a key
        row are left out.
        """
        out: dict[str, AESGCM | None] = {}
        ask = []
        get = self._cache.get
        for s in subjects:
            hit = get(s)
            if hit is None or hit[1] != LEGACY:
                ask.append(s)
            else:
                out[s] = AESGCM(hit[0])
        out.update(self._lookup(conn, ask))
        missing = [s for s in subjects if s not in out]
        if create and missing:
            erased = self._erased(conn, missing)
            for s in erased:
                out[s] = None
            new = [s for s in missing if s not in erased]
            if new:
                from junction.store.repo import insert_ignore_sql

                sql = insert_ignore_sql(conn.dialect.name, t.data_keys, _LEGACY_COLS)
                now = time.time()
                for s in new:
                    wrapped = self.kek.wrap(os.urandom(KEY_BYTES), s.encode("ascii"))
                    conn.exec_driver_sql(sql, (s, wrapped, self.kek.key_id, now))
                out.update(self._lookup(conn, new))  # another writer's key, if it was first
        return out

    def _lookup(self, conn: Connection, subjects: list[str]) -> dict[str, AESGCM | None]:
        """Opened ``data_keys`` keys of ``subjects`` (None: erased)."""
        out: dict[str, AESGCM | None] = {}
        c = t.data_keys.c
        for at in range(0, len(subjects), _CHUNK):
            q = select(c.subject, c.wrapped, c.kek_id).where(
                c.subject.in_(subjects[at : at + _CHUNK])
            )
            for subject, wrapped, kek_id in conn.execute(q):
                out[subject] = None if wrapped is None else self._open(subject, wrapped, kek_id)
        return out

    def _open(self, subject: str, wrapped: bytes, kek_id: str | None) -> AESGCM:
        wrapped = bytes(wrapped)
        hit = self._cache.get(subject)
        if hit is not None and hit[1] == LEGACY and hit[2] == wrapped:
            return AESGCM(hit[0])
        key = self._unwrap(subject.encode("ascii"), wrapped, kek_id)
        self._cache.put_if_absent(subject, key, LEGACY, wrapped)
        return AESGCM(key)

    def require(self, conn: Connection, subjects: Collection[str]) -> dict[str, AESGCM]:
        """The ``data_keys`` keys of ``subjects`` for reading; an erased or unknown one raises."""
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

    # erasure and rotation

    def mark(self, conn: Connection, subjects: Collection[str], now: float) -> None:
        """Start erasing ``subjects``: list them in ``erased_subjects``.

        On PostgreSQL this first takes ``erased_subjects`` exclusively: it waits for the write
        transactions in flight (their rows of the subjects are then visible to the erasure) and
        writers wait for the erasure's commit, then find the subjects erased.  On SQLite the
        write lock orders them.
        """
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE erased_subjects IN EXCLUSIVE MODE")
        from junction.store.repo import insert_ignore_sql

        c = t.data_keys.c
        subjects = list(subjects)
        for at in range(0, len(subjects), _CHUNK):
            conn.execute(
                update(t.data_keys)
                .where(c.subject.in_(subjects[at : at + _CHUNK]))
                .values(erased_at=now)
            )
        sql = insert_ignore_sql(conn.dialect.name, t.erased_subjects, ("subject", "erased_at"))
        for s in subjects:
            conn.exec_driver_sql(sql, (s, now))

    def shred(self, conn: Connection, subjects: Collection[str]) -> int:
        """Destroy every data key of ``subjects``; return how many."""
        now = time.time()
        self.mark(conn, subjects, now)
        # the settings row, as ``rotate`` takes it first: an erasure and a rotation run one after
        # the other (no page re-wrapped under two KEKs, no two orders of key-row locks)
        _touch_settings(conn)
        subjects = list(subjects)
        n = 0
        for table in (t.data_keys, t.subject_keys):
            c = table.c
            for at in range(0, len(subjects), _CHUNK):
                n += conn.execute(
                    update(table)
                    .where(c.subject.in_(subjects[at : at + _CHUNK]), c.wrapped.is_not(None))
                    .values(wrapped=None, kek_id=None, erased_at=now)
                ).rowcount
        n += self._shred_pages(conn, set(subjects))
        evict_everywhere(subjects)  # every keyring of this process; erase() again after commit
        return n

    def _shred_pages(self, conn: Connection, subjects: set[str]) -> int:
        """Empty ``subjects``' slots in every key page (their keys zeroed, the page wrapped
        again); return how many slots.  A scan of the pages (one per write batch of new
        people)."""
        c = t.key_pages.c
        after = -1
        n = 0
        while True:
            q = select(c.id, c.subjects).where(c.id > after).order_by(c.id).limit(_SCAN)
            rows = conn.execute(q).all()
            if not rows:
                return n
            after = rows[-1][0]
            for pid, text in rows:
                if subjects.isdisjoint(text.split(",")):
                    continue
                row = conn.execute(select(c.subjects, c.wrapped, c.kek_id).where(c.id == pid)).one()
                old = self._open_page(int(pid), *row)
                emptied = old.without(subjects, self.kek, keep_empty=True)
                assert emptied is not None
                n += sum(1 for s in old.subjects if s in subjects)
                conn.execute(
                    update(t.key_pages)
                    .where(c.id == pid)
                    .values(subjects=emptied.text, wrapped=emptied.wrapped)
                )

    def rotate(self, conn: Connection, new_kek: KekProvider, *, new_source: str) -> int:
        """Re-wrap every data key and the subject key under ``new_kek``; return how many keys.

        Runs in the caller's transaction: a failure leaves every key under the old KEK.
        """
        if new_kek.key_id == self.kek.key_id:
            raise KeyUnavailableError("the new key-encryption key is the current one")
        settings = t.privacy_settings.c
        # take the settings row first: two rotations (or an enable, or an erasure's page
        # re-wraps) do not interleave
        _touch_settings(conn)
        done = self._rewrap(conn, new_kek, t.data_keys.c.subject, lambda s, _: s.encode("ascii"))
        done += self._rewrap(conn, new_kek, t.subject_keys.c.id, key_context)
        done += self._rewrap(
            conn,
            new_kek,
            t.key_pages.c.id,
            lambda text, pid: page_context(pid, text),
            subject=t.key_pages.c.subjects,
            keys=lambda text: sum(1 for s in text.split(",") if s),
        )
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

    def _rewrap(
        self,
        conn: Connection,
        new_kek: KekProvider,
        by: Any,
        context: Any,
        *,
        subject: Any = None,
        keys: Any = None,
    ) -> int:
        """Re-wrap the live keys of ``by``'s table, in ``by`` order, 2,000 rows at a time;
        return how many keys (``keys(subject)`` per row, else one)."""
        table = by.table
        c = table.c
        subject = c.subject if subject is None else subject
        after: Any = None
        done = 0
        upd = (
            update(table)
            .where(by == bindparam("b"))
            .values(wrapped=bindparam("w"), kek_id=bindparam("k"))
        )
        while True:
            q = select(by, subject, c.wrapped, c.kek_id).where(c.wrapped.is_not(None))
            if after is not None:
                q = q.where(by > after)
            rows = conn.execute(q.order_by(by).limit(2000)).all()
            if not rows:
                return done
            params = []
            for b, subj, wrapped, kek_id in rows:
                if kek_id != self.kek.key_id:
                    raise KeyUnavailableError(
                        f"a data key is wrapped by an unknown key-encryption key (id {kek_id})"
                    )
                ctx = context(subj, b)
                key = self.kek.unwrap(bytes(wrapped), ctx)
                params.append({"b": b, "w": new_kek.wrap(key, ctx), "k": new_kek.key_id})
                done += 1 if keys is None else keys(subj)
            conn.execute(upd, params)
            after = rows[-1][0]


def _by_ids(
    conn: Connection, id_col: Any, cols: tuple[Any, ...], ids: Collection[int]
) -> dict[int, tuple[Any, ...]]:
    """``cols`` of the rows whose ``id_col`` is one of ``ids``, by id (``_CHUNK`` ids a query)."""
    listed = list(ids)
    out: dict[int, tuple[Any, ...]] = {}
    for at in range(0, len(listed), _CHUNK):
        q = select(id_col, *cols).where(id_col.in_(listed[at : at + _CHUNK]))
        for row in conn.execute(q):
            out[int(row[0])] = tuple(row[1:])
    return out


def _touch_settings(conn: Connection) -> None:
    """Take the settings row (until the transaction ends): rotations and erasures run one at
    a time."""
    conn.execute(
        update(t.privacy_settings)
        .where(t.privacy_settings.c.id == SETTINGS_ID)
        .values(updated_at=time.time())
    )


def _settings(conn: Connection) -> Any | None:
    return (
        conn.execute(select(t.privacy_settings).where(t.privacy_settings.c.id == SETTINGS_ID))
        .mappings()
        .first()
    )


def key_counts(conn: Connection, *, system: Collection[str] = ()) -> dict[str, int]:
    """How many people hold live keys, how many live keys, erased subjects, system keys."""
    live: set[str] = set()
    keys = 0
    for table in (t.data_keys, t.subject_keys):
        c = table.c
        q = select(c.subject, func.count()).where(c.wrapped.is_not(None)).group_by(c.subject)
        for subject, n in conn.execute(q):
            live.add(subject)
            keys += int(n)
    for (text,) in conn.execute(select(t.key_pages.c.subjects)):
        slots = [s for s in text.split(",") if s]
        live.update(slots)
        keys += len(slots)
    sys_live = live & set(system)
    sys_keys = len(sys_live)
    erased = conn.execute(select(func.count()).select_from(t.erased_subjects)).scalar_one()
    return {
        "people": len(live - sys_live),
        "keys": keys - sys_keys,
        "erased": int(erased),
        "system": sys_keys,
    }


def settings_row(conn: Connection) -> dict[str, Any] | None:
    """The store's encryption settings (``kek_source``, ``kek_id``...), or None when off."""
    row = _settings(conn)
    return None if row is None else dict(row)
