"""What the customer made of a handoff, for quality per interaction type: the CSAT rating
(1-5), reason tags and whether they contacted again, as the bot reports them after
completion (with a digest to tell a retry from a conflicting report), and the risk class
of the handoff's routing policy when it was requested, so that quality can be grouped by
it. Indexes on handoffs' and offers' creation times serve reports over a window; a partial
one on waiting handoffs' creation times keeps the pool status's oldest wait from reading the
first of them through the whole history.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("risk_class", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("csat", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("feedback_tags", JSON, nullable=True))
        batch_op.add_column(sa.Column("contacted_again", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("feedback_fingerprint", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_handoffs_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_handoffs_waiting_age",
            ["created_at"],
            unique=False,
            sqlite_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
            postgresql_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
        )
    op.create_index("ix_offers_created", "offers", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_offers_created", table_name="offers")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_waiting_age")
        batch_op.drop_index("ix_handoffs_created")
        for column in (
            "feedback_fingerprint",
            "feedback_at",
            "contacted_again",
            "feedback_tags",
            "csat",
            "risk_class",
        ):
            batch_op.drop_column(column)
