"""Documents as json text, compressed with LZ4, on PostgreSQL.

- json rather than jsonb: jsonb parses every key and number of a document when it is written (jsonb_in
  took 51% of the server's CPU while a fresh store was filled, its numbers alone 13%: perf on the
  backend) and serialises it again for every read of its text (each lookup). The API writes and reads
  whole documents: json keeps the text as written, still checked to be JSON and queryable with -> and
  ->> (or a cast to jsonb). Changing the type rewrites the tables once.
- LZ4 rather than pglz: a snapshot (about 2.3 KB) is above the TOAST threshold, and pglz took 41% of
  the server's CPU during a fill. Values already stored keep their compression; a server built
  without LZ4 keeps pglz.

SQLite stores documents as text either way.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DOCUMENTS = (("accounts", "doc"), ("history", "components"), ("alerts", "doc"), ("latest_alerts", "doc"))


def _documents(kind: str, compression: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        text("SELECT :method = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"),
        {"method": compression},
    ).scalar_one_or_none()
    for table, column in DOCUMENTS:
        # The type first: changing it resets the column's compression.
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {kind} USING "{column}"::{kind}')
        if available:
            op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION {compression}')


def upgrade() -> None:
    _documents("json", "lz4")


def downgrade() -> None:
    _documents("jsonb", "pglz")
