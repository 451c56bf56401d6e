"""Replicas and change tracking: a replicas table for liveness, `changed_at` and `changed_by`
(the writing replica) on agents and handoffs for the polling fallback, and why an agent's
status last changed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EPOCH = "1970-01-01 00:00:00"


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.create_index(
            "ix_replicas_live",
            ["heartbeat_at"],
            unique=False,
            sqlite_where=sa.text("stopped_at IS NULL"),
            postgresql_where=sa.text("stopped_at IS NULL"),
        )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status_reason",
                sa.String(length=32),
                nullable=False,
                server_default="AGENT_REQUEST",
            )
        )
        batch_op.add_column(
            sa.Column(
                "changed_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text(f"'{EPOCH}'"),
            )
        )
        batch_op.add_column(
            sa.Column("changed_by", sa.String(length=8), nullable=False, server_default="")
        )
        batch_op.create_index("ix_agents_changed", ["changed_at"], unique=False)
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "changed_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text(f"'{EPOCH}'"),
            )
        )
        batch_op.add_column(
            sa.Column("changed_by", sa.String(length=8), nullable=False, server_default="")
        )
        batch_op.create_index("ix_handoffs_changed", ["changed_at"], unique=False)
    # The defaults only filled existing rows; new rows always set these columns.
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.alter_column("status_reason", server_default=None)
        batch_op.alter_column("changed_at", server_default=None)
        batch_op.alter_column("changed_by", server_default=None)
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.alter_column("changed_at", server_default=None)
        batch_op.alter_column("changed_by", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_changed")
        batch_op.drop_column("changed_by")
        batch_op.drop_column("changed_at")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_changed")
        batch_op.drop_column("changed_by")
        batch_op.drop_column("changed_at")
        batch_op.drop_column("status_reason")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_index("ix_replicas_live")
    op.drop_table("replicas")
