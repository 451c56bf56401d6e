"""The schema, as SQLModel table classes; Alembic migrations create it, these describe it.

Integrity the database enforces by itself, whatever the code above does:
- one PENDING offer per handoff and one ACCEPTED offer per handoff (partial unique indexes),
  so an interaction is offered to at most one agent and assigned at most once;
- an agent's load never exceeds its capacity, nor drops below zero (check constraint);
- one live (not ENDED) session per agent (partial unique index);
- one handoff per idempotency key (unique request_id).

Skills and languages are stored twice on purpose: as JSON on the row, to load an entity in
one read, and as rows of their own, indexed for the matching queries. Only
`store.sql.repositories` writes them, always both in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, CheckConstraint, Index, Table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes everywhere: `timestamptz` on PostgreSQL, naive UTC text
    (which sorts correctly) on SQLite. Refuses naive datetimes on the way in."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite, one step each way instead of SQLAlchemy's two (its DATETIME's formatting or
    # regular expression, then the methods above): a hot-path transaction converts a hundred
    # timestamps, and this is a third of what that cost. The text is the same as SQLite's
    # DATETIME writes ("2026-01-31 09:05:00.000000"), so stored values compare as before.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return sqlite_timestamp
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _from_sqlite
        return super().result_processor(dialect, coltype)


def sqlite_timestamp(value: datetime | None) -> str | None:
    """A timezone-aware datetime as SQLite stores it: naive UTC text with microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _from_sqlite(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _states(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


NEVER = datetime(1, 1, 1, tzinfo=UTC)  # `idle_since` of an agent never assigned

AGENT_STATUSES = ("OFFLINE", "AVAILABLE", "AWAY")
HANDOFF_STATES = ("QUEUED", "OFFERED", "ASSIGNED", "COMPLETED", "CANCELLED", "EXPIRED")
OFFER_STATES = ("PENDING", "ACCEPTED", "DECLINED", "EXPIRED", "RESCINDED", "COMPLETED", "REVOKED")
SESSION_STATES = ("CONNECTED", "DISCONNECTED", "ENDED")


class AgentRow(SQLModel, table=True):
    """An agent: profile plus live dispatch state (status, connection, load)."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("capacity >= 1", name="ck_agents_capacity_positive"),
        CheckConstraint("load >= 0 AND load <= capacity", name="ck_agents_load_within_capacity"),
        _states("status", AGENT_STATUSES, "ck_agents_status"),
        Index(
            "ix_agents_ready",
            "last_assigned_at",
            sqlite_where=text("status = 'AVAILABLE' AND connected AND load < capacity"),
            postgresql_where=text("status = 'AVAILABLE' AND connected AND load < capacity"),
        ),
        Index("ix_agents_changed", "changed_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=100)
    skills: dict[str, int] = Field(sa_type=JSON_TYPE)
    languages: list[str] = Field(sa_type=JSON_TYPE)
    capacity: int
    load: int = 0
    status: str = Field(max_length=16)
    status_reason: str = Field(default="AGENT_REQUEST", max_length=32)
    connected: bool = False
    consecutive_misses: int = 0
    last_assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    changed_at: datetime = Field(sa_type=UTCDateTime)
    changed_by: str = Field(default="", max_length=8)


class AgentSkillRow(SQLModel, table=True):
    """Index of agents by skill and proficiency, for matching. `ready` and `idle_since` copy
    their agent's readiness for offers and last assignment (the beginning of time if never),
    kept in step by triggers (migration 0003), so that ix_agent_skills_ready lists the ready
    agents of a skill in matching order; `expertise` copies its agent's best proficiency in
    any skill (written with the profile), for ix_agent_skills_ready_least."""

    __tablename__ = "agent_skills"
    __table_args__ = (
        CheckConstraint("proficiency BETWEEN 1 AND 5", name="ck_agent_skills_proficiency"),
        Index("ix_agent_skills_skill", "skill", "proficiency", "agent_id"),
    )

    agent_id: str = Field(primary_key=True, foreign_key="agents.id", ondelete="CASCADE")
    skill: str = Field(primary_key=True, max_length=64)
    proficiency: int
    expertise: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # its agent's
    ready: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    idle_since: datetime = Field(default=NEVER, sa_type=UTCDateTime)


_skills: Table = AgentSkillRow.__table__  # type: ignore[attr-defined]
Index(  # made from the columns, as the DESC needs (a string would not compare equal)
    "ix_agent_skills_ready",
    _skills.c.skill,
    _skills.c.proficiency.desc(),
    _skills.c.idle_since,
    _skills.c.agent_id,
    sqlite_where=text("ready = 1"),
    postgresql_where=text("ready"),
)
Index(  # the same for handoffs routed LEAST_EXPERT
    "ix_agent_skills_ready_least",
    _skills.c.skill,
    _skills.c.expertise,
    _skills.c.proficiency,
    _skills.c.idle_since,
    _skills.c.agent_id,
    sqlite_where=text("ready = 1"),
    postgresql_where=text("ready"),
)


class AgentLanguageRow(SQLModel, table=True):
    """Index of agents by language, for matching."""

    __tablename__ = "agent_languages"
    __table_args__ = (Index("ix_agent_languages_language", "language", "agent_id"),)

    agent_id: str = Field(primary_key=True, foreign_key="agents.id", ondelete="CASCADE")
    language: str = Field(primary_key=True, max_length=35)


class HandoffRow(SQLModel, table=True):
    """A handoff: the bot's request and its lifecycle."""

    __tablename__ = "handoffs"
    __table_args__ = (
        _states("state", HANDOFF_STATES, "ck_handoffs_state"),
        CheckConstraint("urgency BETWEEN 1 AND 4", name="ck_handoffs_urgency"),
        Index(
            "ix_handoffs_queue",
            "deadline",
            "created_at",
            "id",
            sqlite_where=text("state = 'QUEUED'"),
            postgresql_where=text("state = 'QUEUED'"),
        ),
        Index(
            "ix_handoffs_waiting",
            "deadline",
            "created_at",
            "id",
            sqlite_where=text("state IN ('QUEUED', 'OFFERED')"),
            postgresql_where=text("state IN ('QUEUED', 'OFFERED')"),
        ),
        Index("ix_handoffs_changed", "changed_at"),
        Index("ix_handoffs_created", "created_at"),
        Index(  # the oldest wait, which the index above would find only by reading it all
            "ix_handoffs_waiting_age",
            "created_at",
            sqlite_where=text("state IN ('QUEUED', 'OFFERED')"),
            postgresql_where=text("state IN ('QUEUED', 'OFFERED')"),
        ),
        Index(  # the quality report's handoffs not final yet (the final ones are rolled up)
            "ix_handoffs_under_way",
            "created_at",
            sqlite_where=text("state IN ('QUEUED', 'OFFERED', 'ASSIGNED')"),
            postgresql_where=text("state IN ('QUEUED', 'OFFERED', 'ASSIGNED')"),
        ),
        Index(
            "ix_handoffs_completed",
            "ended_at",
            sqlite_where=text("state = 'COMPLETED'"),
            postgresql_where=text("state = 'COMPLETED'"),
        ),
        Index(  # finished handoffs by age, for the pruner
            "ix_handoffs_finished",
            "ended_at",
            sqlite_where=text("state IN ('COMPLETED', 'CANCELLED', 'EXPIRED')"),
            postgresql_where=text("state IN ('COMPLETED', 'CANCELLED', 'EXPIRED')"),
        ),
        Index(  # a type's latest completions, for its mean handle time
            "ix_handoffs_completed_type",
            "interaction_type",
            "ended_at",
            sqlite_where=text("state = 'COMPLETED'"),
            postgresql_where=text("state = 'COMPLETED'"),
        ),
        Index(
            "ix_handoffs_review",
            "review_at",
            sqlite_where=text("state = 'QUEUED' AND review_at IS NOT NULL"),
            postgresql_where=text("state = 'QUEUED' AND review_at IS NOT NULL"),
        ),
        Index(
            "ix_handoffs_holds",
            "preferred_agent_id",
            sqlite_where=text("preferred_until IS NOT NULL"),
            postgresql_where=text("preferred_until IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    request_id: str = Field(unique=True, max_length=36)
    fingerprint: str = Field(max_length=64)
    conversation_id: str = Field(max_length=128)
    customer_id: str = Field(max_length=128)
    interaction_type: str = Field(max_length=64)
    required_skills: list[list[Any]] = Field(sa_type=JSON_TYPE)
    language: str | None = Field(default=None, max_length=35)
    urgency: int
    reason: str = Field(max_length=32)
    summary: str
    state: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    deadline: datetime = Field(sa_type=UTCDateTime)
    requeue_count: int = 0
    agent_id: str | None = Field(default=None, foreign_key="agents.id")
    offer_id: str | None = Field(default=None, max_length=36)
    assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=32)
    disposition_code: str = Field(default="", max_length=64)
    notes: str = ""
    completion_fingerprint: str | None = Field(default=None, max_length=64)
    handle_seconds: float | None = None
    changed_at: datetime = Field(sa_type=UTCDateTime)
    changed_by: str = Field(default="", max_length=8)
    bot_id: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    routing: str = Field(default="", max_length=1000, sa_column_kwargs={"server_default": ""})
    # The wait plan (domain.model.WaitPlan); `review_at` is when it next has something due.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    offer_timeout_seconds: float | None = None
    relaxation: list[list[Any]] | None = Field(default=None, sa_type=JSON_TYPE)
    relax_step: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    preferred_agent_id: str | None = Field(default=None, max_length=64)
    preferred_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expert_level: int | None = None
    experts_from: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str = Field(default="", max_length=500, sa_column_kwargs={"server_default": ""})
    agent_order: str = Field(
        default="MOST_PROFICIENT",
        max_length=16,
        sa_column_kwargs={"server_default": "MOST_PROFICIENT"},
    )
    risk_class: str | None = Field(default=None, max_length=8)  # its policy's, when requested
    quality_ranked: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The customer's feedback, reported after completion (domain.model.Feedback).
    csat: int | None = None
    feedback_tags: list[str] | None = Field(default=None, sa_type=JSON_TYPE)
    contacted_again: bool | None = None
    feedback_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    feedback_fingerprint: str | None = Field(default=None, max_length=64)


class HandoffSkillRow(SQLModel, table=True):
    """A handoff's required skills as rows, for the agent-side matching query."""

    __tablename__ = "handoff_skills"

    handoff_id: str = Field(primary_key=True, foreign_key="handoffs.id", ondelete="CASCADE")
    skill: str = Field(primary_key=True, max_length=64)
    min_proficiency: int


class OfferRow(SQLModel, table=True):
    """An offer of a handoff to an agent; ACCEPTED means a live interaction."""

    __tablename__ = "offers"
    __table_args__ = (
        _states("state", OFFER_STATES, "ck_offers_state"),
        Index(
            "uq_offers_one_pending_per_handoff",
            "handoff_id",
            unique=True,
            sqlite_where=text("state = 'PENDING'"),
            postgresql_where=text("state = 'PENDING'"),
        ),
        Index(
            "uq_offers_one_accepted_per_handoff",
            "handoff_id",
            unique=True,
            sqlite_where=text("state = 'ACCEPTED'"),
            postgresql_where=text("state = 'ACCEPTED'"),
        ),
        Index("ix_offers_handoff_agent", "handoff_id", "agent_id"),
        Index("ix_offers_created", "created_at"),
        Index("ix_offers_agent_state", "agent_id", "state"),
        Index(
            "ix_offers_pending_expiry",
            "expires_at",
            sqlite_where=text("state = 'PENDING'"),
            postgresql_where=text("state = 'PENDING'"),
        ),
        Index(
            "ix_offers_answered",
            "decided_at",
            sqlite_where=text("state IN ('ACCEPTED', 'COMPLETED')"),
            postgresql_where=text("state IN ('ACCEPTED', 'COMPLETED')"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    handoff_id: str = Field(foreign_key="handoffs.id")
    agent_id: str = Field(foreign_key="agents.id")
    state: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decline_reason: str | None = Field(default=None, max_length=32)
    rescind_reason: str | None = Field(default=None, max_length=32)
    # Why its agent got it (domain.matching.why_chosen); "" where the agent came free.
    ranking: str = Field(default="", max_length=500, sa_column_kwargs={"server_default": ""})


class SessionRow(SQLModel, table=True):
    """An agent session (presence lease)."""

    __tablename__ = "sessions"
    __table_args__ = (
        _states("state", SESSION_STATES, "ck_sessions_state"),
        Index(
            "uq_sessions_one_live_per_agent",
            "agent_id",
            unique=True,
            sqlite_where=text("state <> 'ENDED'"),
            postgresql_where=text("state <> 'ENDED'"),
        ),
        Index(
            "ix_sessions_grace",
            "grace_expires_at",
            sqlite_where=text("state = 'DISCONNECTED'"),
            postgresql_where=text("state = 'DISCONNECTED'"),
        ),
        Index(  # ended sessions by age, for the pruner
            "ix_sessions_ended",
            "ended_at",
            sqlite_where=text("state = 'ENDED'"),
            postgresql_where=text("state = 'ENDED'"),
        ),
        Index(
            "ix_sessions_replica",
            "replica_id",
            sqlite_where=text("state = 'CONNECTED'"),
            postgresql_where=text("state = 'CONNECTED'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    agent_id: str = Field(foreign_key="agents.id")
    state: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    replica_id: str = Field(max_length=64)
    connection_id: str = Field(max_length=36)
    created_at: datetime = Field(sa_type=UTCDateTime)
    disconnected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    grace_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)


class ReplicaRow(SQLModel, table=True):
    """A humanline process serving this database; alive while it heartbeats."""

    __tablename__ = "replicas"
    __table_args__ = (
        Index(
            "ix_replicas_live",
            "heartbeat_at",
            sqlite_where=text("stopped_at IS NULL"),
            postgresql_where=text("stopped_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class _TrackColumns(SQLModel):
    """Recent outcomes on one interaction type (domain.quality.Track), weighted."""

    completed: float = 0.0
    resolved: float = 0.0
    rated: float = 0.0
    satisfied: float = 0.0
    updated_at: datetime = Field(sa_type=UTCDateTime)


class AgentQualityRow(_TrackColumns, table=True):
    """An agent's recent outcomes on one interaction type: each completion and each rating
    weighs the earlier ones down, in one upsert, so that ranking reads one row per
    candidate."""

    __tablename__ = "agent_quality"

    agent_id: str = Field(primary_key=True, foreign_key="agents.id")
    interaction_type: str = Field(primary_key=True, max_length=64)


class QualityPoolRow(_TrackColumns, table=True):
    """The pool's track on one interaction type: the sums of `agent_quality` as last
    refreshed (by every replica's quality monitor), the prior every agent's score is shrunk
    toward. Kept apart so that completions never contend for one row per type."""

    __tablename__ = "quality_pool"

    interaction_type: str = Field(primary_key=True, max_length=64)


FACT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class QualityFactRow(SQLModel, table=True):
    """What a handoff adds to the quality numbers, waiting to be rolled up: the handoff once
    it is final (kind HANDOFF), each of its answered offers (OFFER), a rating that came
    after (RATING). Written in the transaction that made the handoff final or rated it; the
    rollup folds a batch into `quality_rollups` and deletes it in one transaction, so each
    counts exactly once. Columns as the handoff's (the offer's agent and state, for OFFER)."""

    __tablename__ = "quality_facts"
    __table_args__ = (Index("ix_quality_facts_created", "created_at"),)

    # 64 bits on PostgreSQL (a busy pool writes billions over the years); SQLite's rowid.
    id: int | None = Field(
        default=None,
        sa_column=sa.Column(FACT_ID, primary_key=True, autoincrement=True),
    )
    kind: str = Field(max_length=8)
    created_at: datetime = Field(sa_type=UTCDateTime)  # the handoff's: its bucket
    interaction_type: str = Field(max_length=64)
    risk_class: str | None = Field(default=None, max_length=8)
    required_skills: list[list[Any]] = Field(sa_type=JSON_TYPE)
    agent_id: str | None = Field(default=None, max_length=64)
    state: str | None = Field(default=None, max_length=16)
    deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=32)
    handle_seconds: float | None = None
    csat: int | None = None


class QualityRollupRow(SQLModel, table=True):
    """The tally (domain.quality.Tally) of one group of one dimension over one bucket of time
    (a minute, an hour or a day: `resolution` in seconds) of the handoffs created then, of
    one interaction type. Reports and early warnings add up buckets, never read handoffs."""

    __tablename__ = "quality_rollups"

    resolution: int = Field(primary_key=True)
    dimension: str = Field(primary_key=True, max_length=16)
    bucket_start: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    interaction_type: str = Field(primary_key=True, max_length=64)
    group_key: str = Field(primary_key=True, max_length=64)
    handoffs: int = 0
    completed: int = 0
    resolved: int = 0
    csat_1: int = 0
    csat_2: int = 0
    csat_3: int = 0
    csat_4: int = 0
    csat_5: int = 0
    within_target: int = 0
    cancelled: int = 0
    expired: int = 0
    offers: int = 0
    offers_taken: int = 0
    handled: int = 0
    handle_seconds: float = 0.0
    waits: dict[str, int] = Field(sa_type=JSON_TYPE)  # time to agent: count per wait_bin


class RoutingPolicyRow(SQLModel, table=True):
    """An interaction type's routing policy, as set by the policy file or PoolService; types
    without a row keep their built-in policy."""

    __tablename__ = "routing_policies"

    interaction_type: str = Field(primary_key=True, max_length=64)
    policy: dict[str, Any] = Field(sa_type=JSON_TYPE)
    source: str = Field(max_length=16)  # FILE or API: who set it last
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


def table(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel class, for SQL expressions."""
    result: Table = model.__table__  # type: ignore[attr-defined]
    return result


agents = table(AgentRow)
agent_skills = table(AgentSkillRow)
agent_languages = table(AgentLanguageRow)
handoffs = table(HandoffRow)
handoff_skills = table(HandoffSkillRow)
offers = table(OfferRow)
sessions = table(SessionRow)
replicas = table(ReplicaRow)
routing_policies = table(RoutingPolicyRow)
agent_quality = table(AgentQualityRow)
quality_pool = table(QualityPoolRow)
quality_facts = table(QualityFactRow)
quality_rollups = table(QualityRollupRow)
metadata = SQLModel.metadata
