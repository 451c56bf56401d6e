"""Initial schema: agents, their skills and languages, handoffs, offers, sessions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column(
            "skills",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "languages",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("consecutive_misses", sa.Integer(), nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('OFFLINE', 'AVAILABLE', 'AWAY')", name="ck_agents_status"),
        sa.CheckConstraint("capacity >= 1", name="ck_agents_capacity_positive"),
        sa.CheckConstraint("load >= 0 AND load <= capacity", name="ck_agents_load_within_capacity"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agents_ready",
            ["last_assigned_at"],
            unique=False,
            sqlite_where=sa.text("status = 'AVAILABLE' AND connected AND load < capacity"),
            postgresql_where=sa.text("status = 'AVAILABLE' AND connected AND load < capacity"),
        )

    op.create_table(
        "agent_languages",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id", "language"),
    )
    with op.batch_alter_table("agent_languages", schema=None) as batch_op:
        batch_op.create_index("ix_agent_languages_language", ["language", "agent_id"], unique=False)

    op.create_table(
        "agent_skills",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("proficiency", sa.Integer(), nullable=False),
        sa.CheckConstraint("proficiency BETWEEN 1 AND 5", name="ck_agent_skills_proficiency"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id", "skill"),
    )
    with op.batch_alter_table("agent_skills", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agent_skills_skill", ["skill", "proficiency", "agent_id"], unique=False
        )

    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("interaction_type", sa.String(length=64), nullable=False),
        sa.Column(
            "required_skills",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("urgency", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requeue_count", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("offer_id", sa.String(length=36), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("disposition_code", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.String(), nullable=False),
        sa.Column("completion_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("handle_seconds", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "state IN ('QUEUED', 'OFFERED', 'ASSIGNED', 'COMPLETED', 'CANCELLED')",
            name="ck_handoffs_state",
        ),
        sa.CheckConstraint("urgency BETWEEN 1 AND 4", name="ck_handoffs_urgency"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_handoffs_completed",
            ["ended_at"],
            unique=False,
            sqlite_where=sa.text("state = 'COMPLETED'"),
            postgresql_where=sa.text("state = 'COMPLETED'"),
        )
        batch_op.create_index(
            "ix_handoffs_queue",
            ["deadline", "created_at", "id"],
            unique=False,
            sqlite_where=sa.text("state = 'QUEUED'"),
            postgresql_where=sa.text("state = 'QUEUED'"),
        )
        batch_op.create_index(
            "ix_handoffs_waiting",
            ["deadline", "created_at", "id"],
            unique=False,
            sqlite_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
            postgresql_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
        )

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("replica_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grace_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "state IN ('CONNECTED', 'DISCONNECTED', 'ENDED')", name="ck_sessions_state"
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sessions_grace",
            ["grace_expires_at"],
            unique=False,
            sqlite_where=sa.text("state = 'DISCONNECTED'"),
            postgresql_where=sa.text("state = 'DISCONNECTED'"),
        )
        batch_op.create_index(
            "ix_sessions_replica",
            ["replica_id"],
            unique=False,
            sqlite_where=sa.text("state = 'CONNECTED'"),
            postgresql_where=sa.text("state = 'CONNECTED'"),
        )
        batch_op.create_index(
            "uq_sessions_one_live_per_agent",
            ["agent_id"],
            unique=True,
            sqlite_where=sa.text("state <> 'ENDED'"),
            postgresql_where=sa.text("state <> 'ENDED'"),
        )

    op.create_table(
        "handoff_skills",
        sa.Column("handoff_id", sa.String(), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("min_proficiency", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("handoff_id", "skill"),
    )
    op.create_table(
        "offers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("handoff_id", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decline_reason", sa.String(length=32), nullable=True),
        sa.Column("rescind_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "state IN ('PENDING', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'RESCINDED', 'COMPLETED', 'REVOKED')",
            name="ck_offers_state",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index("ix_offers_agent_state", ["agent_id", "state"], unique=False)
        batch_op.create_index("ix_offers_handoff_agent", ["handoff_id", "agent_id"], unique=False)
        batch_op.create_index(
            "ix_offers_pending_expiry",
            ["expires_at"],
            unique=False,
            sqlite_where=sa.text("state = 'PENDING'"),
            postgresql_where=sa.text("state = 'PENDING'"),
        )
        batch_op.create_index(
            "uq_offers_one_accepted_per_handoff",
            ["handoff_id"],
            unique=True,
            sqlite_where=sa.text("state = 'ACCEPTED'"),
            postgresql_where=sa.text("state = 'ACCEPTED'"),
        )
        batch_op.create_index(
            "uq_offers_one_pending_per_handoff",
            ["handoff_id"],
            unique=True,
            sqlite_where=sa.text("state = 'PENDING'"),
            postgresql_where=sa.text("state = 'PENDING'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_offers_one_pending_per_handoff",
            sqlite_where=sa.text("state = 'PENDING'"),
            postgresql_where=sa.text("state = 'PENDING'"),
        )
        batch_op.drop_index(
            "uq_offers_one_accepted_per_handoff",
            sqlite_where=sa.text("state = 'ACCEPTED'"),
            postgresql_where=sa.text("state = 'ACCEPTED'"),
        )
        batch_op.drop_index(
            "ix_offers_pending_expiry",
            sqlite_where=sa.text("state = 'PENDING'"),
            postgresql_where=sa.text("state = 'PENDING'"),
        )
        batch_op.drop_index("ix_offers_handoff_agent")
        batch_op.drop_index("ix_offers_agent_state")

    op.drop_table("offers")
    op.drop_table("handoff_skills")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sessions_one_live_per_agent",
            sqlite_where=sa.text("state <> 'ENDED'"),
            postgresql_where=sa.text("state <> 'ENDED'"),
        )
        batch_op.drop_index(
            "ix_sessions_replica",
            sqlite_where=sa.text("state = 'CONNECTED'"),
            postgresql_where=sa.text("state = 'CONNECTED'"),
        )
        batch_op.drop_index(
            "ix_sessions_grace",
            sqlite_where=sa.text("state = 'DISCONNECTED'"),
            postgresql_where=sa.text("state = 'DISCONNECTED'"),
        )

    op.drop_table("sessions")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_handoffs_waiting",
            sqlite_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
            postgresql_where=sa.text("state IN ('QUEUED', 'OFFERED')"),
        )
        batch_op.drop_index(
            "ix_handoffs_queue",
            sqlite_where=sa.text("state = 'QUEUED'"),
            postgresql_where=sa.text("state = 'QUEUED'"),
        )
        batch_op.drop_index(
            "ix_handoffs_completed",
            sqlite_where=sa.text("state = 'COMPLETED'"),
            postgresql_where=sa.text("state = 'COMPLETED'"),
        )

    op.drop_table("handoffs")
    with op.batch_alter_table("agent_skills", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_skills_skill")

    op.drop_table("agent_skills")
    with op.batch_alter_table("agent_languages", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_languages_language")

    op.drop_table("agent_languages")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_agents_ready",
            sqlite_where=sa.text("status = 'AVAILABLE' AND connected AND load < capacity"),
            postgresql_where=sa.text("status = 'AVAILABLE' AND connected AND load < capacity"),
        )

    op.drop_table("agents")
