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
