"""Alembic migrations of the store, applied by ``Store.open`` at startup."""
