"""Engine creation and schema migration for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from junction.core.errors import ConfigError, UnavailableError

_INI = Path(__file__).with_name("alembic.ini")
_VERSIONS = Path(__file__).with_name("migrations") / "versions"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # 16 KiB pages suit rows of ~1 KB appended in batches; this only takes effect on a new file
    cur.execute("PRAGMA page_size=16384")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # a larger page cache and fewer WAL checkpoints: batch inserts touch many B-tree pages
    cur.execute("PRAGMA cache_size=-16384")
    cur.execute("PRAGMA wal_autocheckpoint=2500")  # pages: ~40 MB of WAL between checkpoints
    cur.close()


@contextmanager
def raw_cursor(conn: Connection, factory: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """The driver's own cursor on ``conn``, inside its transaction; closed on the way out.

    For hot statements whose parameters and rows are plain tuples: SQLAlchemy's statement
    cache and result rows cost more than the statement there.  ``factory`` makes the cursor
    from the driver's connection instead of its ``cursor()`` (psycopg's ``RawCursor``).
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor() if factory is None else factory(raw)
    try:
        yield cur
    finally:
        cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with Junction's settings (WAL on SQLite)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"invalid store url: {type(exc).__name__}") from exc
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise ConfigError(f"unsupported store backend {parsed.get_backend_name()!r}")


# pg_advisory_xact_lock key for migrations: "JUNCMIGR" in ASCII
_PG_MIGRATE_LOCK = 0x4A554E434D494752


def head_revision() -> str:
    """The newest migration's revision id, from the file names.

    Revisions are numbered in one line (``0001`` ... ``0010``, each file named after its
    revision); a test holds this against Alembic's own reading of the scripts.
    """
    return max(p.name.partition("_")[0] for p in _VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision (None: a new store, or one Alembic never stamped)."""
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    return None if value is None else str(value)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision.

    A store already at the newest revision (every start but the first after an upgrade) is left
    alone without importing Alembic: with Mako and Pygments it is ~9 MB of every process's
    memory, and each stage and share worker opens the store.  On PostgreSQL the upgrade holds a
    transaction-scoped advisory lock, so replicas starting together on an empty database migrate
    one after the other instead of colliding.
    """
    if current_revision(engine) == head_revision():
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(_INI))
    target = _sqlite_migration_engine(engine) if engine.dialect.name == "sqlite" else engine
    try:
        with target.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise UnavailableError(
            "the store could not be migrated", details=f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if target is not engine:
            target.dispose()


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """An engine whose transactions really contain DDL, for migrating a SQLite file.

    Python's sqlite3 driver commits before every DDL statement, so an upgrade killed midway
    would leave half a schema that no later start can migrate ("table already exists").  With
    the driver's own transaction handling off and an explicit ``BEGIN IMMEDIATE``, the whole
    upgrade commits or none of it does, and two processes starting on one new file migrate one
    after the other (the second waits for the write lock, then finds the schema current).
    """
    mig = create_engine(
        engine.url,
        connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
        poolclass=NullPool,
    )
    event.listen(mig, "connect", _sqlite_pragmas)
    event.listen(mig, "begin", _begin_immediate)
    return mig


def open_store_engine(url: str) -> Engine:
    """Create the engine and migrate the schema."""
    engine = make_engine(url)
    migrate(engine)
    return engine
