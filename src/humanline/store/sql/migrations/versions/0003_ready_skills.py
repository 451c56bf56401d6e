"""Ready agents by skill, in matching order: `agent_skills` carries whether its agent can take
an offer now (`ready`) and since when it has been idle (`idle_since`: its last assignment, or
the beginning of time for one never assigned), kept in step with `agents` by triggers. An
index on (skill, proficiency DESC, idle_since, agent_id) over ready rows then yields the best
agent for a one-skill handoff as the first entry of a range, however many agents share the
skill; before, every ready agent with the skill was read and sorted.

On SQLite, a later revision that recreates `agents` or `agent_skills` (Alembic's batch mode
copies a table to alter it) drops these triggers with the table: it must create them again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The same moment on both: sorts before any real assignment.
NEVER_SQLITE = "'0001-01-01 00:00:00.000000'"
NEVER_POSTGRES = "'0001-01-01 00:00:00+00'"

# Whether an agent row (NEW, or agents in a query) can take an offer now: the domain's
# AgentState.AVAILABLE (repositories._READY) for an agent not deleted.
READY = "{a}.status = 'AVAILABLE' AND {a}.connected AND {a}.load < {a}.capacity AND {a}.deleted_at IS NULL"
WATCHED = "status, connected, load, capacity, last_assigned_at, deleted_at"

SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER tr_agents_ready_skills AFTER UPDATE OF {WATCHED} ON agents
    BEGIN
        UPDATE agent_skills
        SET ready = ({READY.format(a="NEW")}),
            idle_since = coalesce(NEW.last_assigned_at, {NEVER_SQLITE})
        WHERE agent_id = NEW.id
          AND (ready IS NOT ({READY.format(a="NEW")})
               OR idle_since IS NOT coalesce(NEW.last_assigned_at, {NEVER_SQLITE}));
    END
    """,
    f"""
    CREATE TRIGGER tr_agent_skills_ready AFTER INSERT ON agent_skills
    BEGIN
        UPDATE agent_skills
        SET (ready, idle_since) = (
            SELECT {READY.format(a="agents")}, coalesce(agents.last_assigned_at, {NEVER_SQLITE})
            FROM agents WHERE agents.id = NEW.agent_id
        )
        WHERE agent_id = NEW.agent_id AND skill = NEW.skill;
    END
    """,
)

POSTGRES_TRIGGERS = (
    f"""
    CREATE FUNCTION humanline_agents_ready_skills() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE agent_skills
        SET ready = ({READY.format(a="NEW")}),
            idle_since = coalesce(NEW.last_assigned_at, {NEVER_POSTGRES})
        WHERE agent_id = NEW.id
          AND (ready IS DISTINCT FROM ({READY.format(a="NEW")})
               OR idle_since IS DISTINCT FROM coalesce(NEW.last_assigned_at, {NEVER_POSTGRES}));
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE TRIGGER tr_agents_ready_skills AFTER UPDATE OF {WATCHED} ON agents
    FOR EACH ROW EXECUTE FUNCTION humanline_agents_ready_skills()
    """,
    f"""
    CREATE FUNCTION humanline_agent_skills_ready() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT {READY.format(a="agents")}, coalesce(agents.last_assigned_at, {NEVER_POSTGRES})
        INTO NEW.ready, NEW.idle_since
        FROM agents WHERE agents.id = NEW.agent_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER tr_agent_skills_ready BEFORE INSERT ON agent_skills
    FOR EACH ROW EXECUTE FUNCTION humanline_agent_skills_ready()
    """,
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    never = NEVER_POSTGRES if postgres else NEVER_SQLITE
    with op.batch_alter_table("agent_skills", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column(
                "idle_since",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text(never),
            )
        )
    op.execute(
        f"""
        UPDATE agent_skills
        SET ready = ({READY.format(a="agents")}),
            idle_since = coalesce(agents.last_assigned_at, {never})
        FROM agents WHERE agents.id = agent_skills.agent_id
        """
    )
    op.create_index(
        "ix_agent_skills_ready",
        "agent_skills",
        ["skill", sa.text("proficiency DESC"), "idle_since", "agent_id"],
        unique=False,
        sqlite_where=sa.text("ready = 1"),
        postgresql_where=sa.text("ready"),
    )
    for statement in POSTGRES_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DROP TRIGGER tr_agent_skills_ready ON agent_skills"
        if postgres
        else "DROP TRIGGER tr_agent_skills_ready"
    )
    op.execute(
        "DROP TRIGGER tr_agents_ready_skills ON agents"
        if postgres
        else "DROP TRIGGER tr_agents_ready_skills"
    )
    if postgres:
        op.execute("DROP FUNCTION humanline_agent_skills_ready()")
        op.execute("DROP FUNCTION humanline_agents_ready_skills()")
    op.drop_index("ix_agent_skills_ready", table_name="agent_skills")
    with op.batch_alter_table("agent_skills", schema=None) as batch_op:
        batch_op.drop_column("idle_since")
        batch_op.drop_column("ready")
