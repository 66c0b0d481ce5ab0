"""The alert feed in detection order: its indexes lead with the detection time.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("alerts_account", table_name="alerts")
    op.drop_index("alerts_kind", table_name="alerts")
    op.create_index("alerts_detected", "alerts", ["detected_ms", "seq"])
    op.create_index("alerts_account", "alerts", ["account_id", "detected_ms", "seq"])
    op.create_index("alerts_kind", "alerts", ["kind", "detected_ms", "seq"])


def downgrade() -> None:
    op.drop_index("alerts_detected", table_name="alerts")
    op.drop_index("alerts_account", table_name="alerts")
    op.drop_index("alerts_kind", table_name="alerts")
    op.create_index("alerts_account", "alerts", ["account_id", "seq"])
    op.create_index("alerts_kind", "alerts", ["kind", "seq"])
