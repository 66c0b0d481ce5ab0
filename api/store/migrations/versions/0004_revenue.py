"""Revenue facts: each account's ARR, currency and renewal, lists by ARR and by renewal (alone and
within a band), and the portfolio's ARR sums.

Rows stored before have no ARR (-1) and no renewal (2**62): no snapshot carried them yet.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ARR_COMMENT = "ARR in whole units of currency; -1 when unknown"
NO_RENEWAL = str(2**62)
RENEWAL_COMMENT = "next renewal, ms since the epoch; 2**62 when unknown"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("arr", sa.BigInteger, nullable=False, server_default="-1", comment=ARR_COMMENT)
        )
        batch.add_column(sa.Column("currency", sa.Text, comment="ISO 4217 code of arr"))
        batch.add_column(
            sa.Column(
                "renewal_ms",
                sa.BigInteger,
                nullable=False,
                server_default=NO_RENEWAL,
                comment=RENEWAL_COMMENT,
            )
        )
    op.create_index("accounts_arr", "accounts", ["arr", "account_id"])
    op.create_index("accounts_renewal", "accounts", ["renewal_ms", "account_id"])
    op.create_index("accounts_band_arr", "accounts", ["band", "arr", "account_id"])
    op.create_index("accounts_band_renewal", "accounts", ["band", "renewal_ms", "account_id"])
    with op.batch_alter_table("portfolio_counts") as batch:
        batch.add_column(
            sa.Column(
                "arr",
                sa.BigInteger,
                nullable=False,
                server_default="0",
                comment="their ARR (arr_ dimensions)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("portfolio_counts") as batch:
        batch.drop_column("arr")
    for name in ("accounts_arr", "accounts_renewal", "accounts_band_arr", "accounts_band_renewal"):
        op.drop_index(name, table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("renewal_ms")
        batch.drop_column("currency")
        batch.drop_column("arr")
