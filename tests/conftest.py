"""Fixtures every test under tests/ can use: the throw-away PostgreSQL server (tests/postgres.py)."""

pytest_plugins = ["tests.postgres"]
