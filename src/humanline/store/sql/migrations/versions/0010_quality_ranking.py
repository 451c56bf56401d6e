"""Quality-aware ranking: each agent's recent outcomes per interaction type (`agent_quality`,
bumped by every completion and rating), the pool's per type (`quality_pool`, refreshed from
it by the quality monitors), whether a handoff's policy ranks its agents by quality (kept
with the handoff, as its agent order is), and why each offer went to its agent.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _track(table: str, *keys: sa.Column[str]) -> None:
    op.create_table(
        table,
        *keys,
        sa.Column("completed", sa.Float(), nullable=False),
        sa.Column("resolved", sa.Float(), nullable=False),
        sa.Column("rated", sa.Float(), nullable=False),
        sa.Column("satisfied", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def upgrade() -> None:
    _track(
        "agent_quality",
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), primary_key=True),
        sa.Column("interaction_type", sa.String(length=64), primary_key=True),
    )
    _track("quality_pool", sa.Column("interaction_type", sa.String(length=64), primary_key=True))
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quality_ranked", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ranking", sa.String(length=500), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_column("ranking")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("quality_ranked")
    op.drop_table("quality_pool")
    op.drop_table("agent_quality")
