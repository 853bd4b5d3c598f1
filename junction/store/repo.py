"""The store's repository: every read and write Junction makes, in one place.

Hot-path batch writes go through the driver's own cursor with multi-row statements built from our
own table metadata (identifiers are never user input; values are always bound parameters): on
SQLite groups of ``_GROUP`` rows, on PostgreSQL ``junction.store.pg_batch``'s.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, Table, and_, delete, func, select, update
from sqlalchemy.exc import OperationalError

from junction.core.errors import InternalError, UnavailableError
from junction.core.logging import get_logger
from junction.store import tables as t
from junction.store.engine import open_store_engine, raw_cursor
from junction.store.heads import routed_only
from junction.store.outcomes import upsert_outcomes
from junction.store.pg_batch import NumberedInserts, numbered_cursor

if TYPE_CHECKING:
    from junction.store.crypto_rows import Presealed, StorePrivacy
    from junction.store.outbox import HealthPolicy

Row = tuple[Any, ...]
log = get_logger(__name__)

RECORD_COLS = (
    "id",
    "pipeline",
    "entity",
    "source_system",
    "source_key",
    "schema_version",
    "payload",
    "provenance",
    "run_id",
    "received_at",
)
SCORE_COLS = (
    "record_id",
    "model_version",
    "model",
    "value",
    "grade",
    "factors",
    "variant",
    "scored_at",
)
DELIVERY_COLS = (
    "id",
    "record_id",
    "pipeline",
    "channel",
    "event_type",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "route",
)
# rows per multi-row INSERT on SQLite (fewest instructions per row, measured: 16-50 alike)
_GROUP = 32
# columns in which one batch's rows usually hold one value (checked per batch before use)
_SHARED_CANDIDATES = frozenset(
    {
        "pipeline",
        "entity",
        "source_system",
        "schema_version",
        "run_id",
        "received_at",
        "model_version",
        "model",
        "variant",
        "scored_at",
        "channel",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "route",
    }
)

QUARANTINE_COLS = (
    "pipeline",
    "stage",
    "record_key",
    "error_type",
    "error_code",
    "message",
    "context",
    "payload",
    "provenance",
    "status",
    "created_at",
    "run_id",
)


# tables whose rows carry personal data: sealed on write when the store's encryption is on
_SEALED = frozenset({"records", "deliveries", "quarantine"})
# how long a store without encryption settings trusts that answer before asking again
_PRIVACY_RECHECK_S = 30.0


def _refuse_split_without_privacy(privacy: StorePrivacy | None, personal: object) -> None:
    """Personal members taken out of the payloads are only for a store that seals them:
    writing the payloads anywhere else would lose those members."""
    if privacy is None and personal is not None:
        raise InternalError(
            "a batch split for encryption at rest reached a store without it; nothing was written"
        )


def insert_ignore_sql(dialect: str, table: Table, cols: tuple[str, ...]) -> str:
    """``INSERT`` of one row that does nothing when its key exists (DB-API paramstyle)."""
    names = ", ".join(cols)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in cols)
        return f"INSERT OR IGNORE INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
    marks = ", ".join("%s" for _ in cols)
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


class Store:
    """Junction's store on SQLite or PostgreSQL.

    When the store's encryption at rest is on (``privacy_settings`` has its row; see
    ``junction.store.keyring``), every write of records, outbox and quarantine rows is sealed,
    also by a ``Store`` that was not given a ``privacy`` object: it loads the settings and the
    KEK they name on first use, and refuses to write (``KeyUnavailableError``) without the KEK
    rather than store personal data in clear.
    """

    def __init__(self, engine: Engine, privacy: StorePrivacy | None = None) -> None:
        """Wrap an engine whose schema is migrated; ``privacy`` seals and opens rows."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._grouped: dict[tuple[str, tuple[str, ...], tuple[int, ...]], str] = {}
        self._numbered = NumberedInserts()  # PostgreSQL's multi-row inserts
        self._privacy = privacy
        self._privacy_checked = float("inf") if privacy is not None else float("-inf")
        # the driver's own errors (insert_many's raw cursor); psycopg only for PostgreSQL, so a
        # SQLite store's processes never load it (~9 MB each)
        self._driver_errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
        if self.dialect == "postgresql":
            import psycopg

            self._driver_errors += (psycopg.OperationalError,)

    @classmethod
    def open(cls, url: str, privacy: StorePrivacy | None = None) -> Store:
        """Open (and migrate) the store at ``url``."""
        return cls(open_store_engine(url), privacy)

    # encryption at rest

    def use_privacy(self, privacy: StorePrivacy | None) -> None:
        """Seal and open rows with ``privacy`` (None: ask the store's settings again)."""
        self._privacy = privacy
        self._privacy_checked = float("inf") if privacy is not None else float("-inf")

    def privacy_in_use(self) -> StorePrivacy | None:
        """The privacy this store seals with now, without asking the store's settings."""
        return self._privacy

    def privacy(self, conn: Connection | None = None) -> StorePrivacy | None:
        """How this store seals rows, or None when its encryption is off.

        Raises:
            KeyUnavailableError: Encryption is on but the KEK its settings name is missing.
        """
        if self._privacy is not None or time.monotonic() - self._privacy_checked < (
            _PRIVACY_RECHECK_S
        ):
            return self._privacy
        from junction.store.crypto import load_kek
        from junction.store.crypto_rows import StorePrivacy
        from junction.store.keyring import Keyring, settings_row

        if conn is None:
            with self.begin() as own:
                return self.privacy(own)
        row = settings_row(conn)
        if row is None:
            self._privacy_checked = time.monotonic()
            return None
        kek = load_kek(str(row["kek_source"]), create=False)
        self.use_privacy(StorePrivacy(Keyring.load(conn, kek, row)))
        return self._privacy

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; store outages surface as UnavailableError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise UnavailableError(
                "the store is unavailable", details=f"{type(exc).__name__}: {exc.orig}"
            ) from exc
        except self._driver_errors as exc:
            # raised by the raw DB-API cursor of insert_many, outside SQLAlchemy's wrapping
            raise UnavailableError(
                "the store is unavailable", details=f"{type(exc).__name__}: {exc}"
            ) from exc

    def _insert_ignore(self, table: Table, cols: tuple[str, ...]) -> str:
        key = (table.name, cols)
        sql = self._sql.get(key)
        if sql is None:
            sql = self._sql[key] = insert_ignore_sql(self.dialect, table, cols)
        return sql

    def insert_many(
        self, conn: Connection, table: Table, cols: tuple[str, ...], rows: Sequence[Row]
    ) -> int:
        """Insert rows, ignoring ones whose key already exists (idempotent re-runs).

        Records, outbox and quarantine rows are sealed first when encryption is on (rows of
        erased subjects are dropped).  Returns how many rows went in (the others were there).
        """
        if not rows:
            return 0
        if table.name in _SEALED and "subject" not in cols:
            privacy = self.privacy(conn)
            if privacy is not None:
                cols, rows = self._seal(conn, privacy, table, cols, rows)
        return self._insert_rows(conn, table, cols, rows)

    def _seal(
        self,
        conn: Connection,
        privacy: StorePrivacy,
        table: Table,
        cols: tuple[str, ...],
        rows: Sequence[Row],
    ) -> tuple[tuple[str, ...], list[Row]]:
        if table.name == "records" and cols == RECORD_COLS:
            return (*cols, "subject"), privacy.seal_records(conn, rows)[0]
        if table.name == "deliveries" and cols[:6] == DELIVERY_COLS[:6]:
            return (*cols, "subject"), privacy.seal_deliveries(conn, rows)
        if table.name == "quarantine" and cols == QUARANTINE_COLS:
            return (*cols, "subject"), privacy.seal_quarantine(conn, rows)
        raise InternalError(
            "rows with personal data in an unexpected column layout cannot be sealed",
            context={"table": table.name},
        )

    def _insert_rows(
        self, conn: Connection, table: Table, cols: tuple[str, ...], rows: Sequence[Row]
    ) -> int:
        """Insert ``rows`` (those whose key exists are skipped); return how many went in.

        Raises:
            InternalError: a row does not hold one value for each of ``cols`` (in a multi-row
                statement its values would land in the wrong columns, or be dropped): nothing
                of the batch is written.
        """
        if not rows:
            return 0
        width = len(cols)
        if any(map(width.__ne__, map(len, rows))):  # in C: ~20 ns a row
            raise InternalError(
                "a row to insert does not match its columns",
                context={"table": table.name, "columns": width},
            )
        if self.dialect == "postgresql":
            with numbered_cursor(conn) as cur:
                return self._numbered.insert(cur, table, cols, rows)
        with raw_cursor(conn) as cur:
            done, inserted = self._insert_grouped(cur, table, cols, rows)
            if done < len(rows):
                cur.executemany(self._insert_ignore(table, cols), rows[done:])
                # both drivers sum the rows each statement of executemany changed
                inserted += max(cur.rowcount, 0)
        return inserted

    def _insert_grouped(
        self, cur: Any, table: Table, cols: tuple[str, ...], rows: Sequence[Row]
    ) -> tuple[int, int]:
        """Insert whole groups of rows with multi-row statements.

        Returns how many rows the groups held, and how many of them went in (the others'
        keys existed).

        SQLite copies every bound text value, and ``executemany`` steps one statement per row:
        a statement of ``_GROUP`` rows whose shared values (the batch's pipeline, run, time...)
        are bound once costs ~25 % fewer instructions per row.  A column counts as shared only
        when every row of the batch holds the very same object in it.
        """
        full = len(rows) // _GROUP * _GROUP
        if not full:
            return 0, 0
        first = rows[0]
        shared = tuple(
            i
            for i, name in enumerate(cols)
            if name in _SHARED_CANDIDATES
            and all(map(is_, map(itemgetter(i), rows), repeat(first[i])))
        )
        own = tuple(i for i in range(len(cols)) if i not in shared)
        if not own:
            return 0, 0
        sql = self._grouped_sql(table, cols, shared)
        head = [first[i] for i in shared]
        pick = itemgetter(*own) if len(own) > 1 else (lambda row: (row[own[0]],))
        inserted = 0
        for at in range(0, full, _GROUP):
            cur.execute(sql, head + list(chain.from_iterable(map(pick, rows[at : at + _GROUP]))))
            inserted += cur.rowcount
        return full, inserted

    def _grouped_sql(self, table: Table, cols: tuple[str, ...], shared: tuple[int, ...]) -> str:
        key = (table.name, cols, shared)
        sql = self._grouped.get(key)
        if sql is None:
            # shared values are parameters ?1..?k in every row; the others are numbered on
            marks: list[str] = []
            n = len(shared)
            for _ in range(_GROUP):
                row = []
                for i in range(len(cols)):
                    if i in shared:
                        row.append(f"?{shared.index(i) + 1}")
                    else:
                        n += 1
                        row.append(f"?{n}")
                marks.append(f"({', '.join(row)})")
            sql = (
                f"INSERT OR IGNORE INTO {table.name} ({', '.join(cols)}) "  # noqa: S608
                f"VALUES {', '.join(marks)}"
            )
            self._grouped[key] = sql
        return sql

    def write_batch(
        self,
        *,
        records: Sequence[Row],
        scores: Sequence[Row],
        deliveries: Sequence[Row],
        quarantined: Sequence[Row],
        cursor: tuple[str, str, dict[str, Any]] | None,
        heads: Sequence[Row] = (),
        outcomes: Sequence[Row] = (),
        also: Callable[[Connection], object] | None = None,
        presealed: Presealed | None = None,
        personal: Sequence[dict[str, Any]] | None = None,
    ) -> tuple[int, int]:
        """Write one batch's effects and its cursor in ONE transaction.

        ``heads`` are the versions of versioned records: deliveries of a record older than its
        source key's newest version, or with the same content, are dropped
        (``junction.store.heads``).  ``outcomes`` are what the batch's records say became of
        their leads (``junction.store.outcomes``; the latest observation wins).  Returns how
        many versions were stored without routing, and how many deliveries were written.
        ``also`` writes more in the same transaction (a stage worker's relay rows).
        ``presealed`` is ``preseal(records, deliveries)`` of these same rows, made before the
        caller took its write lock (encryption at rest).  ``personal``: the records' personal
        members, taken out of their payloads by the preparer (``preseal``).

        Raises:
            InternalError: ``personal`` was given and the store does not encrypt.
        """
        with self.begin() as conn:
            if also is not None:
                also(conn)
            privacy = (
                self.privacy(conn)
                if records or deliveries or quarantined or presealed is not None
                else None
            )
            _refuse_split_without_privacy(privacy, personal)
            if privacy is None:
                deliveries, held_back = routed_only(conn, self.dialect, heads, deliveries)
                self._insert_rows(conn, t.records, RECORD_COLS, records)
                self._insert_rows(conn, t.scores, SCORE_COLS, scores)
                if outcomes:
                    upsert_outcomes(conn, self.dialect, outcomes)
                self._insert_rows(conn, t.deliveries, DELIVERY_COLS, deliveries)
                self._insert_rows(conn, t.quarantine, QUARANTINE_COLS, quarantined)
            else:
                if presealed is None:
                    presealed = privacy.preseal(records, deliveries, personal)
                deliveries, held_back = self._write_sealed(
                    conn, privacy, presealed, scores, quarantined, heads, outcomes
                )
            if cursor is not None:
                self._set_cursor(conn, *cursor)
        return held_back, len(deliveries)

    def _write_sealed(
        self,
        conn: Connection,
        privacy: StorePrivacy,
        pre: Presealed,
        scores: Sequence[Row],
        quarantined: Sequence[Row],
        heads: Sequence[Row],
        outcomes: Sequence[Row],
    ) -> tuple[list[Row], int]:
        """``write_batch`` with encryption on: erased subjects' records and effects dropped."""
        sealed, dropped, deliveries = privacy.finish(conn, pre)
        if dropped:
            log.info("records of erased subjects not stored", records=len(dropped))
            scores = [r for r in scores if r[0] not in dropped]
            heads = [h for h in heads if h[3] not in dropped]
            outcomes = [o for o in outcomes if o[0] not in dropped]
        kept, held_back = routed_only(conn, self.dialect, heads, deliveries)
        self._insert_rows(conn, t.records, (*RECORD_COLS, "subject"), sealed)
        self._insert_rows(conn, t.scores, SCORE_COLS, scores)
        if outcomes:
            upsert_outcomes(conn, self.dialect, outcomes)
        self._insert_rows(conn, t.deliveries, (*DELIVERY_COLS, "subject"), kept)
        if quarantined:
            self._insert_rows(
                conn,
                t.quarantine,
                (*QUARANTINE_COLS, "subject"),
                privacy.seal_quarantine(conn, quarantined),
            )
        return kept, held_back

    def preseal(
        self,
        records: Sequence[Row],
        deliveries: Sequence[Row],
        personal: Sequence[dict[str, Any]] | None = None,
    ) -> Presealed | None:
        """Seal a batch's records and outbox rows before its write (None: encryption is off).

        The costly part of sealing runs here, outside any transaction: a writer that takes a
        write lock (``WriteTurn`` on SQLite) calls this before it and passes the result to
        ``write_batch(presealed=...)``, so the other writers do not wait on its AES-GCM.
        ``personal``: the records' personal members, already taken out of their payloads
        (``StorePrivacy.preseal``).

        Raises:
            InternalError: ``personal`` was given to a store without encryption (the payloads
                lack those members: writing them would lose them).
        """
        privacy = self.privacy()
        _refuse_split_without_privacy(privacy, personal)
        return None if privacy is None else privacy.preseal(records, deliveries, personal)

    # cursors and the file ledger

    def _set_cursor(
        self, conn: Connection, pipeline: str, stream: str, value: dict[str, Any]
    ) -> None:
        data = orjson.dumps(value).decode()
        now = time.time()
        n = conn.execute(
            update(t.cursors)
            .where(t.cursors.c.pipeline == pipeline, t.cursors.c.stream == stream)
            .values(value=data, updated_at=now)
        ).rowcount
        if n == 0:
            conn.execute(
                t.cursors.insert().values(
                    pipeline=pipeline, stream=stream, value=data, updated_at=now
                )
            )

    def set_cursor(self, pipeline: str, stream: str, value: dict[str, Any]) -> None:
        """Commit a cursor on its own (the parallel runner advances it over committed batches)."""
        with self.begin() as conn:
            self._set_cursor(conn, pipeline, stream, value)

    def get_cursor(self, pipeline: str, stream: str) -> dict[str, Any] | None:
        """Return the committed cursor for a stream, if any."""
        with self.begin() as conn:
            v = conn.execute(
                select(t.cursors.c.value).where(
                    t.cursors.c.pipeline == pipeline, t.cursors.c.stream == stream
                )
            ).scalar()
        return None if v is None else dict(orjson.loads(v))

    def finish_file(
        self, pipeline: str, stream: str, sha256: str, path: str, status: str, rows: int
    ) -> None:
        """Record a file as done (or failed) and drop its cursor, atomically."""
        with self.begin() as conn:
            conn.execute(
                delete(t.cursors).where(
                    t.cursors.c.pipeline == pipeline, t.cursors.c.stream == stream
                )
            )
            exists = conn.execute(
                select(t.files.c.status).where(
                    t.files.c.pipeline == pipeline, t.files.c.sha256 == sha256
                )
            ).scalar()
            if exists is None:
                conn.execute(
                    t.files.insert().values(
                        pipeline=pipeline,
                        sha256=sha256,
                        path=path,
                        status=status,
                        rows=rows,
                        finished_at=time.time(),
                    )
                )

    def file_status(self, pipeline: str, sha256: str) -> str | None:
        """Return 'done' or 'failed' for a file already handled by ``pipeline``."""
        with self.begin() as conn:
            status = conn.execute(
                select(t.files.c.status).where(
                    t.files.c.pipeline == pipeline, t.files.c.sha256 == sha256
                )
            ).scalar()
        return None if status is None else str(status)

    # runs

    def start_run(self, pipeline: str) -> int:
        """Create a run row and return its id."""
        with self.begin() as conn:
            res = conn.execute(
                t.runs.insert().values(
                    pipeline=pipeline, status="running", started_at=time.time(), counts="{}"
                )
            )
            pk = res.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    def finish_run(
        self, run_id: int, status: str, counts: dict[str, int], error: str | None = None
    ) -> None:
        """Close a run with its counts."""
        with self.begin() as conn:
            conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=time.time(),
                    counts=orjson.dumps(counts).decode(),
                    error=error,
                )
            )

    # quarantine

    def quarantine_one(self, row: Row) -> None:
        """Quarantine one item outside a batch (file-level errors, exhausted deliveries)."""
        with self.begin() as conn:
            self.insert_many(conn, t.quarantine, QUARANTINE_COLS, [row])

    def list_quarantine(
        self, *, pipeline: str | None = None, status: str = "open", limit: int = 100
    ) -> list[dict[str, Any]]:
        """List quarantined items, newest first."""
        q = select(t.quarantine).where(t.quarantine.c.status == status)
        if pipeline:
            q = q.where(t.quarantine.c.pipeline == pipeline)
        with self.begin() as conn:
            rows = conn.execute(q.order_by(t.quarantine.c.id.desc()).limit(limit)).mappings().all()
            return self.open_quarantine_rows(conn, rows)

    def get_quarantine(self, qid: int) -> dict[str, Any] | None:
        """Return one quarantined item."""
        with self.begin() as conn:
            row = (
                conn.execute(select(t.quarantine).where(t.quarantine.c.id == qid))
                .mappings()
                .first()
            )
            return None if row is None else self.open_quarantine_rows(conn, [row])[0]

    def resolve_quarantine(self, conn: Connection, qid: int, status: str) -> None:
        """Mark a quarantined item replayed or discarded."""
        # the key gets the entry's id appended, so a record that fails again opens a new entry
        conn.execute(
            update(t.quarantine)
            .where(t.quarantine.c.id == qid)
            .values(
                status=status,
                resolved_at=time.time(),
                record_key=t.quarantine.c.record_key + f"#{qid}",
            )
        )

    # deliveries (the outbox)

    def claim_deliveries(
        self,
        limit: int,
        lease_s: float,
        *,
        now: float | None = None,
        slots: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Lease due deliveries to enabled channels, at most ``slots[channel]`` of each.

        See ``junction.store.outbox.claim``.
        """
        from junction.store import outbox

        rows = outbox.claim(self, limit, lease_s, now=now, slots=slots)
        if rows and self.privacy() is not None:
            with self.begin() as conn:
                return self.open_delivery_rows(conn, rows)
        return rows

    def release_claims(self, leases: Sequence[tuple[str, float]]) -> int:
        """Give back claims a worker will not send: each (id, lease_until it was claimed with).

        See ``junction.store.outbox.release``.
        """
        from junction.store import outbox

        return outbox.release(self, leases)

    def record_attempts(
        self,
        outcomes: Sequence[dict[str, Any]],
        quarantined: Sequence[Row],
        *,
        health: HealthPolicy | None = None,
        recheck: bool = False,
    ) -> set[str]:
        """Write attempts, delivery states, endpoint health and events in one transaction.

        Returns the channels this disabled.  ``recheck`` after a failed try of the same batch.
        See ``junction.store.outbox.record``.
        """
        from junction.store import outbox

        return outbox.record(self, outcomes, quarantined, health=health, recheck=recheck)

    def next_due_at(self, channels: Sequence[str] | None = None) -> float | None:
        """When the earliest pending delivery to an enabled channel (of ``channels``) is due."""
        from junction.store import outbox

        return outbox.next_due_at(self, channels)

    def requeue_delivery(self, conn: Connection, delivery_id: str) -> bool:
        """Put a dead delivery back in the queue (replay); True if one was changed."""
        n = conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id == delivery_id, t.deliveries.c.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=time.time(), lease_until=None)
        ).rowcount
        return bool(n)

    # endpoints

    def set_endpoint(
        self,
        channel: str,
        *,
        disabled: bool,
        reason: str | None = None,
        audit: Callable[[Connection], None] | None = None,
    ) -> None:
        """Disable or enable a channel endpoint (with its event; enabling clears its failures);
        ``audit`` writes its audit entry in the same transaction."""
        from junction.store import outbox

        outbox.set_endpoint(self, channel, disabled=disabled, reason=reason, audit=audit)

    def disabled_endpoints(self) -> dict[str, str | None]:
        """Return the disabled channels and why."""
        with self.begin() as conn:
            rows = conn.execute(
                select(t.endpoints.c.channel, t.endpoints.c.reason).where(
                    t.endpoints.c.disabled.is_(True)
                )
            ).all()
        return {r[0]: r[1] for r in rows}

    # read-side summaries

    def counts(self, pipeline: str | None = None) -> dict[str, int]:
        """Totals for the summary table: records, scores, quarantine, deliveries by status."""
        out: dict[str, int] = {}
        with self.begin() as conn:

            def n(table: Table, *conds: Any) -> int:
                q = select(func.count()).select_from(table)
                if conds:
                    q = q.where(and_(*conds))
                return int(conn.execute(q).scalar() or 0)

            rp = [t.records.c.pipeline == pipeline] if pipeline else []
            out["records"] = n(t.records, *rp)
            out["scored"] = (
                n(t.scores, t.scores.c.record_id.in_(select(t.records.c.id).where(*rp)))
                if pipeline
                else n(t.scores)
            )
            qp = [t.quarantine.c.pipeline == pipeline] if pipeline else []
            out["quarantined"] = n(t.quarantine, t.quarantine.c.status == "open", *qp)
            dp = [t.deliveries.c.pipeline == pipeline] if pipeline else []
            for status in ("pending", "delivered", "dead"):
                out[f"deliveries_{status}"] = n(t.deliveries, t.deliveries.c.status == status, *dp)
            out["attempts"] = n(t.attempts)
        return out

    def fetch_record(self, record_id: str) -> dict[str, Any] | None:
        """Return one stored record row."""
        with self.begin() as conn:
            row = (
                conn.execute(select(t.records).where(t.records.c.id == record_id))
                .mappings()
                .first()
            )
            return None if row is None else self.open_record_rows(conn, [row])[0]

    # opening sealed rows (callers that read rows themselves pass them through these)

    def open_record_rows(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Record rows (with ``id``, ``entity``, ``payload``, ``subject``) with payloads opened.

        Raises:
            DecryptionError: A sealed payload was tampered with or moved to another row.
            KeyUnavailableError: The KEK is missing or wrong.
        """
        privacy = self.privacy(conn)
        if privacy is None:
            return [dict(r) for r in rows]
        return privacy.open_records(conn, rows)

    def open_delivery_rows(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Outbox rows (with ``id``, ``record_id``, ``payload``) with payloads opened."""
        privacy = self.privacy(conn)
        if privacy is None:
            return [dict(r) for r in rows]
        return privacy.open_deliveries(conn, rows)

    def sealed_delivery(self, conn: Connection, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """An outbox row (a dict) ready to insert: its payload sealed when encryption is on.

        For writers that insert outbox rows themselves (digests, escalations).  None when the
        row's subject was erased (write nothing).
        """
        out = dict(row)
        privacy = self.privacy(conn)
        if privacy is None:
            return out
        head = (out["id"], out["record_id"], None, None, None, out["payload"])
        sealed = privacy.seal_deliveries(conn, [head])
        if not sealed:
            return None
        out["payload"], out["subject"] = sealed[0][5], sealed[0][-1]
        return out

    def open_quarantine_rows(
        self, conn: Connection, rows: Sequence[Mapping[Any, Any]]
    ) -> list[dict[str, Any]]:
        """Quarantine rows (whole rows, as selected) with their original bytes opened."""
        privacy = self.privacy(conn)
        if privacy is None:
            return [dict(r) for r in rows]
        return privacy.open_quarantine(conn, rows)


__all__ = ["DELIVERY_COLS", "QUARANTINE_COLS", "RECORD_COLS", "SCORE_COLS", "Store"]
