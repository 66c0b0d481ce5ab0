"""The read store: accounts, portfolio counts, history, alerts, offsets.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ORDERED = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", ORDERED, primary_key=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False, comment="snapshot time, ms since the epoch"),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("band", sa.Text, nullable=False),
        sa.Column("segment", sa.Text),
        sa.Column("plan", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("last_activity", ORDERED, nullable=False, comment="RFC 3339; '' when never active"),
        sa.Column("last_activity_ms", sa.BigInteger),
        sa.Column("quiet_since", sa.Text),
        sa.Column("drop_since", sa.Text),
        sa.Column("poor", sa.Boolean, nullable=False),
        sa.Column("started_month", sa.Text, comment="YYYY-MM (UTC) the subscription started"),
        sa.Column("cancelled_month", sa.Text),
        sa.Column("nps_score", sa.Integer),
        sa.Column("doc", DOCUMENT, nullable=False),
    )
    op.create_index("accounts_score", "accounts", ["score", "account_id"])
    op.create_index("accounts_last_activity", "accounts", ["last_activity", "account_id"])
    op.create_index("accounts_last_activity_ms", "accounts", ["last_activity_ms"])
    op.create_index("accounts_band_last_activity", "accounts", ["band", "last_activity", "account_id"])
    for name in ("band", "segment", "plan", "owner"):
        op.create_index(f"accounts_{name}_score", "accounts", [name, "score", "account_id"])
        op.create_index(f"accounts_{name}_id", "accounts", [name, "account_id"])

    op.create_table(
        "portfolio_counts",
        sa.Column(
            "key", sa.Text, primary_key=True, comment="the columns below but accounts, as one JSON array"
        ),
        sa.Column(
            "by_owner", sa.Boolean, nullable=False, comment="counts of one owner's accounts (else of all)"
        ),
        sa.Column("owner", sa.Text),
        sa.Column(
            "by_segment", sa.Boolean, nullable=False, comment="counts of one segment's accounts (else of all)"
        ),
        sa.Column("segment", sa.Text),
        sa.Column(
            "dimension",
            sa.Text,
            nullable=False,
            comment="accounts, band, subscription, nps, quiet, dropping, poor",
        ),
        sa.Column(
            "value",
            sa.Text,
            nullable=False,
            comment="good; 2025-01|2025-06 (start|cancel month); promoter; ''",
        ),
        sa.Column("accounts", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "portfolio_counts_scope", "portfolio_counts", ["by_owner", "by_segment", "owner", "segment"]
    )

    op.create_table(
        "history",
        sa.Column("account_id", ORDERED, primary_key=True),
        sa.Column("day", sa.Text, primary_key=True, comment="YYYY-MM-DD (UTC)"),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("band", sa.Text, nullable=False),
        sa.Column("components", DOCUMENT, nullable=False),
    )
    op.create_index("history_day", "history", ["day"])

    op.create_table(
        "alerts",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("alert_id", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("account_id", ORDERED),
        sa.Column("detected_ms", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.Text, comment="the account's owner when the alert was raised"),
        sa.Column("segment", sa.Text),
        sa.Column("doc", DOCUMENT, nullable=False),
    )
    op.create_index("alerts_account", "alerts", ["account_id", "seq"])
    op.create_index("alerts_kind", "alerts", ["kind", "seq"])

    op.create_table(
        "latest_alerts",
        sa.Column("account_id", ORDERED, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("detected_ms", sa.BigInteger, nullable=False),
        sa.Column("doc", DOCUMENT, nullable=False),
    )

    op.create_table(
        "offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "offsets", "latest_alerts", "alerts", "history", "portfolio_counts", "accounts"):
        op.drop_table(table)
