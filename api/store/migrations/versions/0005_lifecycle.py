"""Lifecycle: each account's lifecycle status and active days of 7 and of 28 days, the lists they filter
(each with the default order, score, and the status by id too), and the portfolio's counts per status.

Rows stored before have none (NULL), as their snapshots told none: each is set by the account's next
snapshot. The portfolio counts need no change: a status is one more dimension of ``portfolio_counts``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIFECYCLE_COMMENT = "new, returning, resurrecting or dormant on the snapshot's day; NULL: none"
ACTIVE_DAYS_COMMENT = "active days of the {} ending on the snapshot's day; NULL: unknown"
INDEXES = {
    "accounts_lifecycle_score": ["lifecycle", "score", "account_id"],
    "accounts_lifecycle_id": ["lifecycle", "account_id"],
    "accounts_active_days_7_score": ["active_days_7", "score", "account_id"],
    "accounts_active_days_28_score": ["active_days_28", "score", "account_id"],
}


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("lifecycle", sa.Text, comment=LIFECYCLE_COMMENT))
        batch.add_column(sa.Column("active_days_7", sa.Integer, comment=ACTIVE_DAYS_COMMENT.format(7)))
        batch.add_column(sa.Column("active_days_28", sa.Integer, comment=ACTIVE_DAYS_COMMENT.format(28)))
    for name, columns in INDEXES.items():
        op.create_index(name, "accounts", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("active_days_28")
        batch.drop_column("active_days_7")
        batch.drop_column("lifecycle")
