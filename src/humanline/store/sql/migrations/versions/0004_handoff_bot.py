"""The bot that requested each handoff (its token's subject), so that a bot sees only its
own; handoffs made before have none and are visible to ops only.

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


def upgrade() -> None:
    # A plain ADD COLUMN on both databases (SQLite's batch mode would copy the table).
    op.add_column(
        "handoffs",
        sa.Column("bot_id", sa.String(length=64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("bot_id")
