"""Documents compressed with LZ4 on PostgreSQL.

A snapshot is about 2.3 KB of JSON, above PostgreSQL's TOAST threshold: every write compressed it with
the default pglz, which took 41% of the server's CPU while a fresh store was filled (perf on the
backend). LZ4 compresses as well for these documents at a fraction of the cost. Values already stored
keep their compression; a server built without LZ4 keeps pglz. SQLite stores documents as text.

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


def _set(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        text("SELECT :method = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"),
        {"method": method},
    ).scalar_one_or_none()
    if not available:
        return
    for table, column in DOCUMENTS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION {method}')


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("pglz")
