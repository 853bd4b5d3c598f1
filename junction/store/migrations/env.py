"""Alembic environment: runs migrations on the connection Junction hands over."""

from __future__ import annotations

from alembic import context

from junction.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - Junction always passes a connection
    raise RuntimeError("run migrations through junction.store.engine.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
