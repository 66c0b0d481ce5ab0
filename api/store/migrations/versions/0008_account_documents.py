"""Each account's snapshot in a table of its own (``account_documents``), out of ``accounts``.

``accounts`` holds the fields lists filter and sort on, about 150 bytes a row; with the snapshot (about
2.4 KB) in it, each of its twenty-four indexes, and each count of the portfolio, read the whole
documents again: building an index over 1,000,000 accounts read 6 GB. ``account_documents`` holds the
snapshot and its time (the upsert keeps the newer, as for ``accounts``), written with the account's row.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ORDERED = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _lz4(table: str) -> None:
    """Documents compressed with LZ4 on PostgreSQL, as migration 0003 made them (when it is built in)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar_one_or_none()
    if available:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "doc" SET COMPRESSION lz4')


def upgrade() -> None:
    op.create_table(
        "account_documents",
        sa.Column("account_id", ORDERED, primary_key=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False, comment="snapshot time, ms since the epoch"),
        sa.Column("doc", sa.JSON, nullable=False),
    )
    _lz4("account_documents")
    op.execute(
        "INSERT INTO account_documents (account_id, at_ms, doc) SELECT account_id, at_ms, doc FROM accounts"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("doc")


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("doc", sa.JSON))
    op.execute(
        "UPDATE accounts SET doc = (SELECT d.doc FROM account_documents d"
        " WHERE d.account_id = accounts.account_id)"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("doc", existing_type=sa.JSON, nullable=False)
    _lz4("accounts")
    op.drop_table("account_documents")
