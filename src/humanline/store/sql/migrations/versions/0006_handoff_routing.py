"""Why each handoff is routed as it is (its routing policy, effective urgency, proficiency
floor and their reasons), for GetHandoff; handoffs made before have none.

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


def upgrade() -> None:
    # A plain ADD COLUMN on both databases (SQLite's batch mode would copy the table).
    op.add_column(
        "handoffs",
        sa.Column("routing", sa.String(length=1000), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("routing")
