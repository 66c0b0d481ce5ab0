"""The portfolio over time: per scope and UTC day, how the accounts per band and lifecycle status and
the ARR per band changed that day (``portfolio_days``).

The API counts the accounts already stored into it when it next opens the store (the ``meta`` row
``count_portfolio_days`` asks for that), each on the day of its stored snapshot; from then on it
follows each snapshot applied.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portfolio_days",
        sa.Column(
            "key",
            sa.Text,
            primary_key=True,
            comment="the columns below but accounts and arr, as one JSON array",
        ),
        sa.Column(
            "by_owner", sa.Boolean, nullable=False, comment="changes of one owner's accounts (else of all)"
        ),
        sa.Column("owner", sa.Text),
        sa.Column(
            "by_segment",
            sa.Boolean,
            nullable=False,
            comment="changes of one segment's accounts (else of all)",
        ),
        sa.Column("segment", sa.Text),
        sa.Column(
            "day", sa.Text, nullable=False, comment="YYYY-MM-DD (UTC) of the snapshots that made the change"
        ),
        sa.Column("dimension", sa.Text, nullable=False, comment="band, arr_band, lifecycle"),
        sa.Column(
            "value",
            sa.Text,
            nullable=False,
            comment="good; poor|EUR (a band's ARR in a currency); dormant",
        ),
        sa.Column(
            "accounts",
            sa.BigInteger,
            nullable=False,
            comment="change of the accounts with the value that day",
        ),
        sa.Column("arr", sa.BigInteger, nullable=False, comment="change of their ARR (arr_band)"),
    )
    op.create_index(
        "portfolio_days_scope", "portfolio_days", ["by_owner", "by_segment", "owner", "segment", "day"]
    )
    op.execute("INSERT INTO meta (key, value) VALUES ('count_portfolio_days', '1')")


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key = 'count_portfolio_days'")
    op.drop_index("portfolio_days_scope", table_name="portfolio_days")
    op.drop_table("portfolio_days")
