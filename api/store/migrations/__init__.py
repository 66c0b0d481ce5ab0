"""Alembic migrations of the read store (``api.store.sql.migrate`` runs them at start)."""
