"""Shared fixtures: the store on SQLite and PostgreSQL, clean environments."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

pytest_plugins = ["tests.pii_canary_plugin"]  # no canary personal data in any log line

PG_URL = os.environ.get("JUNCTION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("JUNCTION_REQUIRE_PG") == "1"


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_URL)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    ok = _pg_available()
    if not ok and REQUIRE_PG:
        pytest.fail(f"PostgreSQL is required (JUNCTION_REQUIRE_PG=1) but {PG_URL} is unreachable")
    return ok


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not pg_available:
        pytest.skip("PostgreSQL not reachable (set JUNCTION_REQUIRE_PG=1 to make this a failure)")
    schema = f"jt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The store URL for both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'junction.db'}"
    return request.getfixturevalue("pg_url")


REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def redis_available() -> str:
    """The machine's Redis URL; the test is skipped when nothing answers there."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("JUNCTION_") and key not in (
            "JUNCTION_TEST_PG_URL",
            "JUNCTION_REQUIRE_PG",
        ):
            monkeypatch.delenv(key, raising=False)
    # the fakes listen on loopback: allow it past the egress policy (SSRF guard) in every test;
    # tests of the policy itself pass their own EgressPolicy or delete this variable
    monkeypatch.setenv("JUNCTION_EGRESS_ALLOW", "127.0.0.0/8,::1/128")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model registry with the default lead model trained once for the session."""
    from scoring.registry import ensure_default_model

    root = tmp_path_factory.mktemp("models")
    ensure_default_model(root, name="lead-score")
    return root
