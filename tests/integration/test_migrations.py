"""The Alembic migrations build exactly the tables the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from junction.store.engine import open_store_engine
from junction.store.tables import metadata


def test_migrations_match_the_declared_tables(store_url: str) -> None:
    engine = open_store_engine(store_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        # ignore the alembic bookkeeping table; everything else must match
        assert [d for d in diff if "alembic_version" not in repr(d)] == []
    finally:
        engine.dispose()


def test_replicas_migrating_an_empty_postgresql_at_once_do_not_collide(pg_url: str) -> None:
    """Four processes start together on an empty schema: all succeed, the schema is at head."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from junction.store.engine import open_store_engine\n"
        "open_store_engine(sys.argv[1]).dispose()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", probe, pg_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url)
    try:
        with eng.connect() as conn:
            heads = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        eng.dispose()
    assert len(heads) == 1
