"""Onboarding milestones: each account's onboarding status, the overdue days of its worst missing
milestone and whether it is in its first onboarding days; the list by overdue days (alone and within a
status), the status filter (with the default order, score, and by id), and the portfolio's counts.

Rows stored before have no status (NULL), no overdue milestone (-1) and are not onboarding (false)
until the account's next snapshot sets them. The portfolio counts need no change: a status and a start
month's completed and in-progress onboardings are more dimensions of ``portfolio_counts``, and rows
stored before count in none of them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ONBOARDING_STATUS_COMMENT = "on_track, behind, stuck or complete; NULL: none"
ONBOARDING_OVERDUE_COMMENT = "overdue days of the worst missing onboarding milestone; -1 when none"
ONBOARDING_ACTIVE_COMMENT = "in its first onboarding days"
INDEXES = {
    "accounts_onboarding_status_score": ["onboarding_status", "score", "account_id"],
    "accounts_onboarding_status_id": ["onboarding_status", "account_id"],
    "accounts_onboarding_overdue": ["onboarding_overdue_days", "account_id"],
    "accounts_onboarding_status_overdue": ["onboarding_status", "onboarding_overdue_days", "account_id"],
}


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("onboarding_status", sa.Text, comment=ONBOARDING_STATUS_COMMENT))
        batch.add_column(
            sa.Column(
                "onboarding_overdue_days",
                sa.Integer,
                nullable=False,
                server_default="-1",
                comment=ONBOARDING_OVERDUE_COMMENT,
            )
        )
        batch.add_column(
            sa.Column(
                "onboarding_active",
                sa.Boolean,
                nullable=False,
                server_default=sa.false(),
                comment=ONBOARDING_ACTIVE_COMMENT,
            )
        )
    for name, columns in INDEXES.items():
        op.create_index(name, "accounts", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("onboarding_active")
        batch.drop_column("onboarding_overdue_days")
        batch.drop_column("onboarding_status")
