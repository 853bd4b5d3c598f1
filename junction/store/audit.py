"""The audit log: who did what to which target, when, in a tamper-evident hash chain.

Each row's ``hash`` is ``sha256(prev_hash + canonical JSON of the row)``, and ``prev_hash`` is the
hash of the row before it, so editing, deleting or reordering any row breaks every later link and
``verify()`` names the first broken row.  (Cutting rows off the end is only visible against a
copy of the last hash kept elsewhere: the CLI and the API print it.)

Appends never fork the chain: the appender takes the log's write lock before it reads the last
hash (``pg_advisory_xact_lock`` on PostgreSQL; on SQLite an UPDATE that takes the database write
lock), assigns the next ids itself, and commits.  Details pass through the pseudonymizer, so
personal data is stored only as keyed pseudonyms (or as ``[kind]`` when no key is at hand).

``AuditBuffer`` batches high-rate automated decisions (scores, routes) into one transaction every
~200 ms or 500 entries, so a scoring request never waits for a commit of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.exc import DataError, IntegrityError

from junction.core.errors import UnavailableError
from junction.core.logging import get_logger
from junction.core.pseudonym import Pseudonymizer, redacted, scrub
from junction.store.repo import Store
from junction.store.tables import audit_log

log = get_logger(__name__)

# pg_advisory_xact_lock key: "JUNCTION" in ASCII
_PG_LOCK_KEY = 0x4A554E4354494F4E
_LIMITS = {"actor": 128, "action": 64, "target": 600, "request_id": 64}


@dataclass(frozen=True)
class AuditEntry:
    """An event to append: ``actor`` did ``action`` to ``target``."""

    actor: str
    action: str
    target: str
    request_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PreparedEntry:
    """An entry made safe to store: clipped, personal data pseudonymized, detail serialized."""

    at: float
    actor: str
    action: str
    target: str
    request_id: str | None
    detail: str  # canonical JSON


@dataclass(frozen=True)
class AuditRecord:
    """A stored audit row."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str | None
    hash: str


@dataclass(frozen=True)
class ChainCheck:
    """What ``AuditLog.check`` found."""

    first_broken_id: int | None  # None: intact
    entries: int  # rows read (up to and including the broken one)
    head_hash: str | None  # the newest row's hash when intact; keep a copy to detect truncation


def canonical(data: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (what the hash covers)."""
    opts = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    try:
        return orjson.dumps(data, option=opts, default=_default).decode()
    except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits: an audit entry must not fail
        return orjson.dumps(_plain(data), option=opts, default=_default).decode()


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)  # datetimes, decimals, ids: their text form


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, set | frozenset):
        return [_plain(v) for v in sorted(data, key=str)]
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    if isinstance(data, int) and not isinstance(data, bool) and abs(data) >= 2**63:
        return str(data)
    return data


def row_hash(prev_hash: str | None, row: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of the row)`` as hex."""
    body = canonical(
        {
            "id": row["id"],
            "at": row["at"],
            "actor": row["actor"],
            "action": row["action"],
            "target": row["target"],
            "request_id": row["request_id"],
            "detail": row["detail"],  # the stored JSON text, hashed as it is stored
        }
    )
    return hashlib.sha256((prev_hash or "").encode() + body.encode()).hexdigest()


class AuditLog:
    """Append to, read and verify the audit log."""

    def __init__(self, store: Store, pseudonymizer: Pseudonymizer | None = None) -> None:
        """Without a ``pseudonymizer``, personal data in details is replaced by ``[kind]``."""
        self.store = store
        self.pseudonymizer = pseudonymizer

    def _safe_text(self, value: str, limit: int) -> str:
        # e.g. someone typed an email address as a client id: it is personal data too
        replace = self.pseudonymizer.of if self.pseudonymizer else redacted
        # NUL cannot be stored in PostgreSQL text: one such entry must not block the log
        return str(scrub(value, replace)).replace("\x00", "\ufffd")[:limit]

    def pseudonymize(self, kind: str, value: object) -> str:
        """The pseudonym of one value (or ``[kind]`` without a key)."""
        return self.pseudonymizer.of(kind, value) if self.pseudonymizer else redacted(kind, value)

    def safe_detail(self, detail: Mapping[str, Any]) -> dict[str, Any]:
        """``detail`` with personal data replaced by pseudonyms (email, phone, name, ...)."""
        replace = self.pseudonymizer.of if self.pseudonymizer else redacted
        out: dict[str, Any] = scrub(dict(detail), replace)
        return out

    def prepare(self, entry: AuditEntry) -> PreparedEntry:
        """Make ``entry`` safe to store; cheap enough for a request thread."""
        rid = self._safe_text(entry.request_id, _LIMITS["request_id"]) if entry.request_id else None
        return PreparedEntry(
            at=float(entry.at),
            actor=self._safe_text(entry.actor, _LIMITS["actor"]),
            action=self._safe_text(entry.action, _LIMITS["action"]),
            target=self._safe_text(entry.target, _LIMITS["target"]),
            request_id=rid,
            detail=canonical(self.safe_detail(entry.detail)),
        )

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        request_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry in its own transaction; return the stored row."""
        entry = AuditEntry(actor, action, target, request_id, dict(detail or {}))
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in one transaction, in order."""
        prepared = [self.prepare(e) for e in entries]
        with self.store.begin() as conn:
            return self.write(conn, prepared)

    def append_in(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append inside the caller's transaction (the action and its audit commit together)."""
        return self.write(conn, [self.prepare(e) for e in entries])

    def write(self, conn: Connection, prepared: Sequence[PreparedEntry]) -> list[AuditRecord]:
        """Chain and insert prepared entries in ``conn``'s transaction."""
        if not prepared:
            return []
        self._lock(conn)
        last = conn.execute(
            select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
        ).first()
        last_id, prev = (int(last[0]), str(last[1])) if last is not None else (0, None)
        rows: list[dict[str, Any]] = []
        for i, p in enumerate(prepared, start=1):
            row: dict[str, Any] = {
                "id": last_id + i,
                "at": p.at,
                "actor": p.actor,
                "action": p.action,
                "target": p.target,
                "request_id": p.request_id,
                "detail": p.detail,
                "prev_hash": prev,
            }
            row["hash"] = prev = row_hash(row["prev_hash"], row)
            rows.append(row)
        conn.execute(insert(audit_log), rows)
        return [_record(r) for r in rows]

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        else:
            # an UPDATE takes SQLite's write lock even when it matches no row; the busy timeout
            # makes other appenders wait for our commit before they read the last hash
            conn.execute(
                update(audit_log).where(audit_log.c.id == -1).values(hash=audit_log.c.hash)
            )

    def query(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries newest first, filtered; page with ``before_id`` (the last id seen)."""
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action is not None:
            # "quarantine.*" selects a family of actions
            if action.endswith(".*"):
                q = q.where(audit_log.c.action.startswith(action[:-1], autoescape=True))
            else:
                q = q.where(audit_log.c.action == action)
        if actor is not None:
            q = q.where(audit_log.c.actor == actor)
        if target is not None:
            q = q.where(audit_log.c.target == target)
        if since is not None:
            q = q.where(audit_log.c.at >= since)
        if until is not None:
            q = q.where(audit_log.c.at < until)
        if before_id is not None:
            q = q.where(audit_log.c.id < before_id)
        with self.store.begin() as conn:
            return [_record(dict(r._mapping)) for r in conn.execute(q)]

    def count(self) -> int:
        """How many entries the log holds."""
        with self.store.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    def head(self) -> AuditRecord | None:
        """The newest entry (its hash anchors the whole chain)."""
        rows = self.query(limit=1)
        return rows[0] if rows else None

    def verify(self) -> int | None:
        """The id of the first row whose link or hash is wrong; None when the chain is intact."""
        return self.check().first_broken_id

    def check(self) -> ChainCheck:
        """Walk the whole chain: the first broken row, how many rows, the newest hash."""
        prev: str | None = None
        n = 0
        for row in self._scan():
            n += 1
            if row["prev_hash"] != prev or row["hash"] != row_hash(prev, row):
                return ChainCheck(int(row["id"]), n, None)
            prev = row["hash"]
        return ChainCheck(None, n, prev)

    def _scan(self, chunk: int = 2000) -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            q = select(audit_log).where(audit_log.c.id > after).order_by(audit_log.c.id)
            with self.store.begin() as conn:
                rows = [dict(r._mapping) for r in conn.execute(q.limit(chunk))]
            yield from rows
            if len(rows) < chunk:
                return
            after = int(rows[-1]["id"])


def _record(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=int(row["id"]),
        at=float(row["at"]),
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        request_id=row["request_id"],
        detail=orjson.loads(row["detail"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


class AuditBuffer:
    """An in-process queue of audit entries written in batches by a background thread.

    Entries are made safe (pseudonymized) when added, so what waits in memory holds no personal
    data.  A flush runs every ``interval_s`` or as soon as ``max_batch`` entries wait, one
    transaction per batch.  When the store fails the batch stays queued, in order, and is
    retried; past ``max_pending`` entries ``add`` raises UnavailableError (503), because a
    decision that cannot be audited should not be made.  ``close``/``aclose`` flush what is left.
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        interval_s: float = 0.2,
        max_batch: int = 500,
        max_pending: int = 50_000,
        close_attempts: int = 5,
    ) -> None:
        """Start the flushing thread."""
        self.audit = audit
        self.interval_s = interval_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.close_attempts = close_attempts
        self.written = 0
        self.flushes = 0
        self._pending: list[PreparedEntry] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-buffer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Entries waiting to be written."""
        with self._cond:
            return len(self._pending)

    def add(self, entry: AuditEntry) -> None:
        """Queue ``entry``; never blocks on the store."""
        prepared = self.audit.prepare(entry)
        with self._cond:
            if self._closed:
                raise UnavailableError("the audit log is shutting down", retry_after=1)
            if len(self._pending) >= self.max_pending:
                raise UnavailableError("the audit log is falling behind", retry_after=1)
            self._pending.append(prepared)
            if len(self._pending) >= self.max_batch:
                self._cond.notify()

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        request_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one entry (same arguments as ``AuditLog.append``)."""
        self.add(AuditEntry(actor, action, target, request_id, dict(detail or {})))

    def _run(self) -> None:
        failures = 0
        retry_at = 0.0
        while True:
            with self._cond:
                wake = time.monotonic() + self.interval_s
                while True:
                    urgent = self._closed or len(self._pending) >= self.max_batch
                    target = retry_at if urgent else max(wake, retry_at)
                    now = time.monotonic()
                    if now >= target:
                        break
                    self._cond.wait(timeout=target - now)
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                closing = self._closed
            if not batch:
                if closing:
                    return
                continue
            try:
                with self.audit.store.begin() as conn:
                    self.audit.write(conn, batch)
            except (DataError, IntegrityError):
                # one entry the store refuses must not block every later one: write singly
                written, left = self._write_singly(batch)
                self.written += written
                self.flushes += 1
                if not left:
                    continue
                with self._cond:
                    self._pending[:0] = left
                failures += 1
                retry_at = time.monotonic() + min(5.0, 0.25 * 2**failures)
                continue
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the batch, retry
                failures += 1
                log.error("audit flush failed", error=type(exc).__name__, entries=len(batch))
                with self._cond:
                    self._pending[:0] = batch
                retry_at = time.monotonic() + min(5.0, 0.25 * 2**failures)
                if closing and failures >= self.close_attempts:
                    self._give_up()
                    return
                continue
            failures = 0
            self.written += len(batch)
            self.flushes += 1

    def _write_singly(self, batch: list[PreparedEntry]) -> tuple[int, list[PreparedEntry]]:
        """Write entries one per transaction; drop (to the log) those the store refuses.

        Returns how many were written and, if the store failed otherwise, the unwritten rest.
        """
        written = 0
        for i, p in enumerate(batch):
            try:
                with self.audit.store.begin() as conn:
                    self.audit.write(conn, [p])
                written += 1
            except (DataError, IntegrityError) as exc:
                log.error("audit entry refused by the store", error=type(exc).__name__, **vars(p))
            except Exception as exc:  # noqa: BLE001 - the store is failing: retry the rest later
                log.error("audit flush failed", error=type(exc).__name__, entries=len(batch) - i)
                return written, batch[i:]
        return written, []

    def _give_up(self) -> None:
        with self._cond:
            left, self._pending = self._pending, []
        # last resort: the entries are already pseudonymized, so the log may carry them
        for p in left:
            log.error("audit entry not stored", **vars(p))

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking entries, write what is queued, stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=timeout_s)

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """``close`` without blocking the event loop."""
        await asyncio.to_thread(self.close, timeout_s)
