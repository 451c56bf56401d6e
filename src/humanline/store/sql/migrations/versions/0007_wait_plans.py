"""What happens to a handoff while it waits, from its type's routing policy: its maximum
wait (then it ends EXPIRED, a new state, with a reason), its offers' timeout, its relaxation
steps and how many are applied, the wait for the customer's known agent, and `review_at`, the
next moment any of these is due, which the dispatcher's sweep finds by index. Handoffs made
before have no plan: they wait as they did. Also the order in which a handoff's eligible
agents are tried (`agent_order`: the least expert first for routine work, with each agent's
best skill level copied to its skill rows and an index of ready agents by skill in that
order), and an index on when accepted offers were answered,
for the wait estimates' mean time to accept.

On SQLite the new state needs the table copied (its CHECK constraint cannot be altered in
place); `migrations.upgrade` runs revisions with foreign keys off for that, as Alembic's
batch mode requires, and checks them afterwards.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_STATES = "state IN ('QUEUED', 'OFFERED', 'ASSIGNED', 'COMPLETED', 'CANCELLED')"
NEW_STATES = "state IN ('QUEUED', 'OFFERED', 'ASSIGNED', 'COMPLETED', 'CANCELLED', 'EXPIRED')"
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("offer_timeout_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("relaxation", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("relax_step", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("preferred_agent_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("preferred_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("review_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("end_reason", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "agent_order",
                sa.String(length=16),
                nullable=False,
                server_default="MOST_PROFICIENT",
            )
        )
        batch_op.drop_constraint("ck_handoffs_state", type_="check")
        batch_op.create_check_constraint("ck_handoffs_state", sa.text(NEW_STATES))
        batch_op.create_index(
            "ix_handoffs_review",
            ["review_at"],
            unique=False,
            sqlite_where=sa.text("state = 'QUEUED' AND review_at IS NOT NULL"),
            postgresql_where=sa.text("state = 'QUEUED' AND review_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_handoffs_holds",
            ["preferred_agent_id"],
            unique=False,
            sqlite_where=sa.text("preferred_until IS NOT NULL"),
            postgresql_where=sa.text("preferred_until IS NOT NULL"),
        )

    # Not in batch mode: copying agent_skills on SQLite would drop its triggers (0003).
    op.add_column(
        "agent_skills",
        sa.Column("expertise", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE agent_skills SET expertise = (SELECT max(s.proficiency) FROM agent_skills s"
        " WHERE s.agent_id = agent_skills.agent_id)"
    )
    op.create_index(
        "ix_agent_skills_ready_least",
        "agent_skills",
        ["skill", "expertise", "proficiency", "idle_since", "agent_id"],
        unique=False,
        sqlite_where=sa.text("ready = 1"),
        postgresql_where=sa.text("ready"),
    )
    op.create_index(
        "ix_offers_answered",
        "offers",
        ["decided_at"],
        unique=False,
        sqlite_where=sa.text("state IN ('ACCEPTED', 'COMPLETED')"),
        postgresql_where=sa.text("state IN ('ACCEPTED', 'COMPLETED')"),
    )


def downgrade() -> None:
    op.drop_index("ix_offers_answered", table_name="offers")
    op.drop_index("ix_agent_skills_ready_least", table_name="agent_skills")
    op.drop_column("agent_skills", "expertise")
    op.execute("UPDATE handoffs SET state = 'CANCELLED' WHERE state = 'EXPIRED'")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_holds")
        batch_op.drop_index("ix_handoffs_review")
        batch_op.drop_constraint("ck_handoffs_state", type_="check")
        batch_op.create_check_constraint("ck_handoffs_state", sa.text(OLD_STATES))
        for column in (
            "agent_order",
            "end_reason",
            "review_at",
            "preferred_until",
            "preferred_agent_id",
            "relax_step",
            "relaxation",
            "offer_timeout_seconds",
            "expires_at",
        ):
            batch_op.drop_column(column)
