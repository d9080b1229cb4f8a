"""Alembic environment: always run online, on the connection the store hands
over in ``config.attributes["connection"]`` (see ``sluiceway.store.migrate``)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through sluiceway.store.migrate.upgrade(), not the alembic CLI")

context.configure(connection=connection, target_metadata=None,
                  version_table=context.config.attributes.get("version_table", "sluiceway_schema_version"),
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
