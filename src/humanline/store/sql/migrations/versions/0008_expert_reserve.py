"""The experts' reserve of a handoff's wait plan: agents whose best skill is at `expert_level`
or above may not take it before `experts_from` (from its type's routing policy:
`expert_level` and `expert_delay`), so that they stay free for the work only they can do.
Handoffs made before have no reserve.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expert_level", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("experts_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("experts_from")
        batch_op.drop_column("expert_level")
