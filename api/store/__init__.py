"""The API's indexed read store: snapshots, alerts and history in SQLite (embedded) or PostgreSQL."""
