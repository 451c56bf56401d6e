"""Quality numbers kept incrementally: what each final handoff, answered offer and late rating
adds (`quality_facts`, written with the change) and the tallies per group and bucket of time
they are rolled up into (`quality_rollups`); indexes for the report's handoffs under way, for
a type's latest completions (the wait estimates' mean handle time), and for the pruner
(finished handoffs and ended sessions by age). History already stored becomes facts here, so
that reports over it still work: the rollup folds them in, a batch at a time, once a server
runs.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
FINAL = "('COMPLETED', 'CANCELLED', 'EXPIRED')"
ANSWERED = "('ACCEPTED', 'COMPLETED', 'REVOKED', 'DECLINED', 'EXPIRED')"
COLUMNS = (
    "kind, created_at, interaction_type, risk_class, required_skills, agent_id, state, "
    "deadline, assigned_at, outcome, handle_seconds, csat"
)


def upgrade() -> None:
    op.create_table(
        "quality_facts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interaction_type", sa.String(length=64), nullable=False),
        sa.Column("risk_class", sa.String(length=8), nullable=True),
        sa.Column("required_skills", JSON, nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("handle_seconds", sa.Float(), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
    )
    op.create_index("ix_quality_facts_created", "quality_facts", ["created_at"])
    op.create_table(
        "quality_rollups",
        sa.Column("resolution", sa.Integer(), primary_key=True),
        sa.Column("dimension", sa.String(length=16), primary_key=True),
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("interaction_type", sa.String(length=64), primary_key=True),
        sa.Column("group_key", sa.String(length=64), primary_key=True),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in (
                "handoffs",
                "completed",
                "resolved",
                "csat_1",
                "csat_2",
                "csat_3",
                "csat_4",
                "csat_5",
                "within_target",
                "cancelled",
                "expired",
                "offers",
                "offers_taken",
                "handled",
            )
        ),
        sa.Column("handle_seconds", sa.Float(), nullable=False),
        sa.Column("waits", JSON, nullable=False),
    )
    op.create_index(
        "ix_handoffs_under_way",
        "handoffs",
        ["created_at"],
        sqlite_where=sa.text("state IN ('QUEUED', 'OFFERED', 'ASSIGNED')"),
        postgresql_where=sa.text("state IN ('QUEUED', 'OFFERED', 'ASSIGNED')"),
    )
    op.create_index(
        "ix_handoffs_completed_type",
        "handoffs",
        ["interaction_type", "ended_at"],
        sqlite_where=sa.text("state = 'COMPLETED'"),
        postgresql_where=sa.text("state = 'COMPLETED'"),
    )
    op.create_index(
        "ix_handoffs_finished",
        "handoffs",
        ["ended_at"],
        sqlite_where=sa.text(f"state IN {FINAL}"),
        postgresql_where=sa.text(f"state IN {FINAL}"),
    )
    op.create_index(
        "ix_sessions_ended",
        "sessions",
        ["ended_at"],
        sqlite_where=sa.text("state = 'ENDED'"),
        postgresql_where=sa.text("state = 'ENDED'"),
    )
    # The history so far, as facts (with its ratings on the handoffs' own).
    op.execute(
        f"INSERT INTO quality_facts ({COLUMNS}) "
        "SELECT 'HANDOFF', created_at, interaction_type, risk_class, required_skills, "
        "agent_id, state, deadline, assigned_at, outcome, handle_seconds, csat "
        f"FROM handoffs WHERE state IN {FINAL}"
    )
    op.execute(
        f"INSERT INTO quality_facts ({COLUMNS}) "
        "SELECT 'OFFER', h.created_at, h.interaction_type, h.risk_class, h.required_skills, "
        "o.agent_id, o.state, NULL, NULL, NULL, NULL, NULL "
        "FROM offers o JOIN handoffs h ON h.id = o.handoff_id "
        f"WHERE h.state IN {FINAL} AND o.state IN {ANSWERED}"
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_ended", table_name="sessions")
    op.drop_index("ix_handoffs_finished", table_name="handoffs")
    op.drop_index("ix_handoffs_completed_type", table_name="handoffs")
    op.drop_index("ix_handoffs_under_way", table_name="handoffs")
    op.drop_table("quality_rollups")
    op.drop_index("ix_quality_facts_created", table_name="quality_facts")
    op.drop_table("quality_facts")
