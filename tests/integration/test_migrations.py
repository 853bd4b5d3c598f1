"""The Alembic migrations build exactly the tables the code declares, on both backends."""

from __future__ import annotations

from pathlib import Path

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


def test_the_head_revision_read_from_the_file_names_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from junction.store.engine import _INI, head_revision

    scripts = ScriptDirectory.from_config(Config(str(_INI)))
    assert scripts.get_heads() == [head_revision()]  # one line of revisions, this its end
    # every file is named after its revision, so the names order the line
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert Path(script.path).name.startswith(f"{script.revision}_")


def test_a_current_store_opens_without_loading_alembic(store_url: str) -> None:
    """Every process opens the store; only the first after an upgrade needs Alembic (and a
    SQLite store's processes never need the PostgreSQL driver)."""
    import subprocess
    import sys

    open_store_engine(store_url).dispose()  # now at head
    probe = (
        "import sys\n"
        "from junction.store.repo import Store\n"
        "Store.open(sys.argv[1]).close()\n"
        "print(sorted(m for m in ('alembic', 'mako', 'psycopg') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, store_url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip()
    if store_url.startswith("sqlite"):
        assert loaded == "[]"
    else:
        assert loaded == "['psycopg']"
