"""The store port's repositories in SQLAlchemy Core, portable between SQLite and PostgreSQL.

State changes are conditional single statements (`UPDATE ... WHERE state = ...`) whose row
count says whether they applied; constraints in `tables` refuse what must never happen.
Matching queries (`candidates_for`, `queued_for_agent`) implement
`humanline.domain.matching.is_eligible` in SQL; tests hold the two to each other.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles

from humanline.domain.matching import QUALITY_WINDOW, Candidate
from humanline.domain.model import (
    Agent,
    AgentOrder,
    AgentProfile,
    AgentState,
    AgentStatus,
    Completion,
    DeclineReason,
    Feedback,
    Handoff,
    HandoffReason,
    HandoffRequest,
    HandoffState,
    Offer,
    OfferState,
    Outcome,
    PlannedStep,
    RescindReason,
    RiskClass,
    Session,
    SessionEndReason,
    SessionState,
    SkillRequirement,
    StatusChangeReason,
    Urgency,
    WaitPlan,
)
from humanline.domain.quality import (
    FORGET,
    NEUTRAL,
    PRIOR_WEIGHT,
    SCORE_BANDS,
    OutcomeQuery,
    Standing,
    Track,
    is_satisfied,
)
from humanline.domain.validation import MAX_PROFICIENCY, MAX_REQUIRED_SKILLS
from humanline.store.port import AtRisk, Capacity, DuplicateKey, EligibleSupply, PoolSnapshot
from humanline.store.sql.prepared import PREPARED
from humanline.store.sql.tables import (
    agent_languages,
    agent_quality,
    agent_skills,
    agents,
    handoff_skills,
    handoffs,
    offers,
    quality_pool,
    replicas,
    sessions,
)


class SqlConnection(Protocol):
    """What the repositories use of a connection: SQLAlchemy's `AsyncConnection`, or the
    embedded store's in-loop writer (`sqlite.InlineConnection`)."""

    @property
    def dialect(self) -> Dialect:
        """The database's dialect."""
        ...

    async def execute(self, statement: sa.Executable, parameters: Any = None) -> Any:
        """Runs one statement; its result, a SQLAlchemy `Result` or the in-loop writer's
        equivalent for the methods used here (first, one, scalar(s), iteration, rowcount)."""
        ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]:
        """A SAVEPOINT for the block."""
        ...


# Aliases built once: an alias's column collection is costly to set up, and a statement built
# from the same aliases has the same cache key, so its compiled form is reused.
_SKILL_MATCH = tuple(agent_skills.alias(f"s{i}") for i in range(MAX_REQUIRED_SKILLS))
_AGENTS_SKILLS = agent_skills.alias("mine")

_MISSED = (OfferState.DECLINED, OfferState.EXPIRED)
_WAITING = (HandoffState.QUEUED, HandoffState.OFFERED)


def _const(value: enum.Enum) -> sa.ColumnElement[str]:
    """A state constant written into the SQL text rather than bound: the planner can then
    match the partial indexes on state (`WHERE state = 'QUEUED'`) in every plan, also a
    prepared statement's generic one. (Enum values are plain upper-case words.)"""
    assert str(value.value).isidentifier(), value
    return sa.literal_column(f"'{value.value}'", sa.String())


S = TypeVar("S", bound=sa.Executable)


def _statement(build: Callable[..., S]) -> Callable[..., S]:
    """Builds a hot-path statement once per shape. `build` takes only the statement's shape
    (how many skills, with or without a language), never values, which go in as bind
    parameters; every call then gets the same statement object, whose compiled form
    SQLAlchemy finds without building or keying it again. That is most of what a statement
    costs here: a few µs in SQLite, tens to hundreds of µs to build and key."""

    @functools.cache
    def prepared(*shape: Any, **options: Any) -> S:
        return build(*shape, **options).execution_options(**{PREPARED: True})

    return prepared


def _p(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    """A named bind parameter (names differ from columns', which SET clauses reserve). Its
    type comes from the column it is compared with or assigned to, or is given."""
    return sa.bindparam(f"p_{name}", type_=type_)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


# --- agents -------------------------------------------------------------------------------


def _agent(row: sa.Row[Any]) -> Agent:
    m = row._mapping
    return Agent(
        id=m["id"],
        profile=AgentProfile(
            display_name=m["display_name"],
            skills=dict(m["skills"]),
            languages=frozenset(m["languages"]),
            capacity=m["capacity"],
        ),
        status=AgentStatus(m["status"]),
        status_reason=StatusChangeReason(m["status_reason"]),
        connected=bool(m["connected"]),
        load=m["load"],
        consecutive_misses=m["consecutive_misses"],
        last_assigned_at=m["last_assigned_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


_LIVE_AGENT = agents.c.deleted_at.is_(None)
_READY = sa.and_(
    agents.c.status == _const(AgentStatus.AVAILABLE),
    agents.c.connected == sa.true(),
    agents.c.load < agents.c.capacity,
)


def agent_state_clause(state: AgentState) -> sa.ColumnElement[bool]:
    """`domain.model.Agent.state` as a SQL condition."""
    status, connected, full = (
        agents.c.status,
        agents.c.connected,
        agents.c.load >= agents.c.capacity,
    )
    online = status != _const(AgentStatus.OFFLINE)
    match state:
        case AgentState.OFFLINE:
            return status == _const(AgentStatus.OFFLINE)
        case AgentState.RECONNECTING:
            return sa.and_(online, connected == sa.false())
        case AgentState.AWAY:
            return sa.and_(status == _const(AgentStatus.AWAY), connected == sa.true())
        case AgentState.BUSY:
            return sa.and_(status == _const(AgentStatus.AVAILABLE), connected == sa.true(), full)
        case AgentState.AVAILABLE:
            return _READY


@_statement
def _agent_by_id() -> sa.Select[Any]:
    return sa.select(agents).where(agents.c.id == _p("id"), _LIVE_AGENT)


def _stamped_agent_update() -> sa.Update:
    """An UPDATE of agents that stamps `changed_at`, for the replicas' change feed."""
    return sa.update(agents).values(changed_at=_p("changed_at"), changed_by=_p("changed_by"))


@_statement
def _reserve_slot() -> sa.Update:
    return (
        _stamped_agent_update()
        .where(agents.c.id == _p("id"), _LIVE_AGENT, _READY)
        .values(load=agents.c.load + 1)
    )


@_statement
def _release_slots() -> sa.Update:
    return (
        _stamped_agent_update()
        .where(agents.c.id == _p("id"))
        .values(load=agents.c.load - _p("slots"))
        .returning(*agents.c)
    )


@_statement
def _record_assignment() -> sa.Update:
    return (
        _stamped_agent_update()
        .where(agents.c.id == _p("id"))
        .values(consecutive_misses=0, last_assigned_at=_p("now"))
    )


def _qualified_agents(skills: int, language: bool) -> tuple[sa.Select[Any], sa.ColumnElement[Any]]:
    """Agents with a handoff's skills (`p_skill<i>` at `p_min<i>` or better) and language
    (`p_language`), and their proficiency score."""
    stmt = sa.select(agents).where(_LIVE_AGENT)
    score: sa.ColumnElement[Any] = sa.literal(0)
    for i in range(skills):
        s = _SKILL_MATCH[i]
        stmt = stmt.join(
            s,
            sa.and_(
                s.c.agent_id == agents.c.id,
                s.c.skill == _p(f"skill{i}"),
                s.c.proficiency >= _p(f"min{i}"),
            ),
        )
        score = score + s.c.proficiency
    if language:
        stmt = stmt.where(_speaks(agents.c.id))
    return stmt, score


def _speaks(agent_id: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """The agent speaks the handoff's language (`p_language`)."""
    return sa.exists().where(
        agent_languages.c.agent_id == agent_id, agent_languages.c.language == _p("language")
    )


def _qualified_params(skills: tuple[SkillRequirement, ...], language: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"p_language": language}
    for i, req in enumerate(skills):
        params[f"p_skill{i}"] = req.skill
        params[f"p_min{i}"] = req.min_proficiency
    return params


def _expertise(skills: int) -> sa.ColumnElement[Any]:
    """The best skill level of an agent of `_qualified_agents(skills, ...)`: copied on its
    first matched skill row, or (no skill matched) the highest of its skills, 0 for none."""
    if skills:
        return _SKILL_MATCH[0].c.expertise
    theirs = _AGENTS_SKILLS.c.agent_id == agents.c.id
    top = sa.select(sa.func.max(_AGENTS_SKILLS.c.proficiency)).where(theirs)
    return sa.func.coalesce(top.scalar_subquery(), 0)


class _floor(sa.sql.functions.FunctionElement[Any]):
    """floor() of a non-negative number: PostgreSQL's, or a cast to integer in SQLite (whose
    floor() exists only where built with its math functions)."""

    inherit_cache = True
    type = sa.Integer()


@compiles(_floor)
def _floor_default(element: _floor, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


@compiles(_floor, "postgresql")
def _floor_postgresql(element: _floor, compiler: Any, **kw: Any) -> str:
    return f"floor({compiler.process(element.clauses, **kw)})"


class _unindexed(sa.sql.functions.FunctionElement[Any]):
    """A column that a condition compares, kept from choosing the index to use: SQLite's
    unary `+` (a no-op on any value), nothing elsewhere. For a condition on the live rows
    whose partial index SQLite would pass over for an open range on an index of all rows:
    `state = 'QUEUED' AND created_at <= ?` through the index on `created_at` reads the
    whole history up to the moment."""

    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(_unindexed)
def _unindexed_default(element: _unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_unindexed, "sqlite")
def _unindexed_sqlite(element: _unindexed, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


_TRACK = ("completed", "resolved", "rated", "satisfied")  # domain.quality.Track's fields
_OWN_TRACK = tuple(sa.func.coalesce(agent_quality.c[n], 0.0).label(f"own_{n}") for n in _TRACK)
_POOL_TRACK = tuple(sa.func.coalesce(quality_pool.c[n], 0.0).label(f"pool_{n}") for n in _TRACK)


def _standing(row: sa.Row[Any]) -> Standing:
    """A candidate's standing, from the columns `_with_quality` adds."""
    m = row._mapping
    return Standing(
        Track(*(m[f"own_{n}"] for n in _TRACK)), Track(*(m[f"pool_{n}"] for n in _TRACK))
    )


def _quality_band() -> sa.ColumnElement[Any]:
    """`domain.quality.Standing.band` in SQL, in the same order of floating-point operations,
    of an agent joined to its `agent_quality` row and the `quality_pool` row of the type."""
    own, pool = agent_quality.c, quality_pool.c
    weight = sa.literal(PRIOR_WEIGHT, sa.Float())
    neutral = sa.literal(NEUTRAL, sa.Float())
    zero = sa.literal(0.0, sa.Float())

    def rate(hits: sa.Column[Any], trials: sa.Column[Any]) -> sa.ColumnElement[Any]:
        return sa.case((trials > 0, hits / trials), else_=neutral)

    def shrunk(hits: sa.Column[Any], trials: sa.Column[Any], prior: sa.ColumnElement[Any]) -> Any:
        return (sa.func.coalesce(hits, zero) + weight * prior) / (
            sa.func.coalesce(trials, zero) + weight
        )

    resolution = shrunk(own.resolved, own.completed, rate(pool.resolved, pool.completed))
    satisfaction = shrunk(own.satisfied, own.rated, rate(pool.satisfied, pool.rated))
    mean = (resolution + satisfaction) / sa.literal(2.0, sa.Float())
    return _floor(mean * sa.literal(float(SCORE_BANDS), sa.Float()))


def _with_quality(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """Candidates with their agent's and the pool's track on the type `p_interaction_type`."""
    return (
        stmt.outerjoin(
            agent_quality,
            sa.and_(
                agent_quality.c.agent_id == agents.c.id,
                agent_quality.c.interaction_type == _p("interaction_type"),
            ),
        )
        .outerjoin(quality_pool, quality_pool.c.interaction_type == _p("interaction_type"))
        .add_columns(*_OWN_TRACK, *_POOL_TRACK)
    )


@_statement
def _candidates(
    skills: int, language: bool, least: bool, reserve: bool, quality: bool
) -> sa.Select[Any]:
    """Agents eligible for handoff `p_handoff_id`, best first: the most proficient, or with
    `least` the least expert and least proficient who qualifies; then the longest idle. With
    `reserve`, only agents whose best skill is below `p_expert_level` (the handoff keeps
    experts back for now). With `quality`, the first `p_window` of those, ranked again with
    the quality band on the type `p_interaction_type` after the levels
    (`domain.matching.rank`)."""
    excluded = sa.exists().where(
        offers.c.handoff_id == _p("handoff_id"),
        offers.c.agent_id == agents.c.id,
        offers.c.state.in_([_const(s) for s in _MISSED]),
    )
    levels: tuple[tuple[sa.ColumnElement[Any], bool], ...]  # (level, descending)
    if skills == 1:
        # The common case, in index order: the first ready agent of the skill that is not
        # excluded is the best (ix_agent_skills_ready, or ix_agent_skills_ready_least; their
        # columns follow the agent's, expertise included).
        ready = _SKILL_MATCH[0]
        levels = (
            ((ready.c.expertise, False), (ready.c.proficiency, False))
            if least
            else ((ready.c.proficiency, True),)
        )
        idle: sa.ColumnElement[Any] = ready.c.idle_since  # never assigned: the beginning
        agent_id: sa.ColumnElement[Any] = ready.c.agent_id
        stmt = (
            sa.select(agents)
            .select_from(ready.join(agents, agents.c.id == ready.c.agent_id))
            .where(
                ready.c.skill == _p("skill0"),
                ready.c.ready == sa.true(),
                ready.c.proficiency >= _p("min0"),
                ~excluded,
            )
        )
        if language:
            stmt = stmt.where(_speaks(agents.c.id))
        if reserve:
            stmt = stmt.where(ready.c.expertise < _p("expert_level", sa.Integer()))
        idle_order = idle
    else:
        stmt, score = _qualified_agents(skills, language)
        expertise = _expertise(skills)
        levels = ((expertise, False), (score, False)) if least else ((score, True),)
        if reserve:
            stmt = stmt.where(expertise < _p("expert_level", sa.Integer()))
        stmt = stmt.where(_READY, ~excluded)
        idle, agent_id = agents.c.last_assigned_at, agents.c.id
        idle_order = idle.asc().nulls_first()
    order = [level.desc() if down else level for level, down in levels]
    if not quality:
        return stmt.order_by(*order, idle_order, agent_id).limit(_p("limit"))
    # Quality chooses among the first few by level and idle time, a bounded read however
    # many agents are ready.
    window = (
        stmt.with_only_columns(
            agents.c.id.label("candidate"),
            *(level.label(f"level{i}") for i, (level, _) in enumerate(levels)),
            idle.label("idle"),
        )
        .order_by(*order, idle_order, agent_id)
        .limit(_p("window"))
        .subquery("window")
    )
    ranked = _with_quality(
        sa.select(agents).select_from(window.join(agents, agents.c.id == window.c.candidate))
    )
    kept = [
        window.c[f"level{i}"].desc() if down else window.c[f"level{i}"]
        for i, (_, down) in enumerate(levels)
    ]
    return ranked.order_by(
        *kept, _quality_band().desc(), window.c.idle.asc().nulls_first(), window.c.candidate
    ).limit(_p("limit"))


@_statement
def _online_below(skills: int, language: bool) -> sa.Select[Any]:
    qualified, _ = _qualified_agents(skills, language)
    found = qualified.where(
        agents.c.status == _const(AgentStatus.AVAILABLE),
        agents.c.connected == sa.true(),
        _expertise(skills) < _p("expert_level", sa.Integer()),
    )
    return sa.select(sa.exists(found.with_only_columns(sa.literal(1))))


@_statement
def _supply(skills: int, language: bool) -> sa.Select[Any]:
    qualified, _ = _qualified_agents(skills, language)
    sub = qualified.where(
        agents.c.status == _const(AgentStatus.AVAILABLE), agents.c.connected == sa.true()
    ).subquery()
    return sa.select(sa.func.coalesce(sa.func.sum(sub.c.capacity), 0), sa.func.count())


class SqlAgentRepository:
    """Agents on SQL."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def _stamped(self, stmt: sa.Update, **params: Any) -> Any:
        """Runs an UPDATE built on `_stamped_agent_update`, stamped with this transaction's
        time and writer; `params` fill its other `_p` parameters."""
        values = {f"p_{k}": v for k, v in params.items()}
        values.update(p_changed_at=self._now, p_changed_by=self._writer)
        return await self._conn.execute(stmt, values)

    async def get(self, agent_id: str) -> Agent | None:
        row = (await self._conn.execute(_agent_by_id(), {"p_id": agent_id})).first()
        return _agent(row) if row else None

    async def insert(self, agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
        values = {
            "id": agent_id,
            "display_name": profile.display_name,
            "skills": dict(profile.skills),
            "languages": sorted(profile.languages),
            "capacity": profile.capacity,
            "load": 0,
            "status": AgentStatus.OFFLINE.value,
            "connected": False,
            "consecutive_misses": 0,
            "created_at": now,
            "updated_at": now,
            "changed_at": now,
            "changed_by": self._writer,
        }
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(sa.insert(agents).values(**values))
        except IntegrityError as exc:
            raise DuplicateKey(agent_id) from exc
        await self._index_profile(agent_id, profile)
        agent = await self.get(agent_id)
        assert agent is not None
        return agent

    async def _unindex(self, agent_id: str) -> None:
        await self._conn.execute(sa.delete(agent_skills).where(agent_skills.c.agent_id == agent_id))
        await self._conn.execute(
            sa.delete(agent_languages).where(agent_languages.c.agent_id == agent_id)
        )

    async def _index_profile(self, agent_id: str, profile: AgentProfile) -> None:
        await self._unindex(agent_id)
        if profile.skills:
            expertise = max(profile.skills.values())
            await self._conn.execute(
                sa.insert(agent_skills),
                [
                    {"agent_id": agent_id, "skill": s, "proficiency": p, "expertise": expertise}
                    for s, p in profile.skills.items()
                ],
            )
        if profile.languages:
            await self._conn.execute(
                sa.insert(agent_languages),
                [{"agent_id": agent_id, "language": lang} for lang in sorted(profile.languages)],
            )

    async def update_profile(
        self, agent_id: str, profile: AgentProfile, now: datetime
    ) -> Agent | None:
        stmt = (
            _stamped_agent_update()
            .where(agents.c.id == agent_id, _LIVE_AGENT, agents.c.load <= profile.capacity)
            .values(
                display_name=profile.display_name,
                skills=dict(profile.skills),
                languages=sorted(profile.languages),
                capacity=profile.capacity,
                updated_at=now,
            )
            .returning(*agents.c)
        )
        row = (await self._stamped(stmt)).first()
        if row is None:
            return None
        await self._index_profile(agent_id, profile)
        return _agent(row)

    async def mark_deleted(self, agent_id: str, now: datetime) -> bool:
        stmt = (
            _stamped_agent_update()
            .where(
                agents.c.id == agent_id,
                _LIVE_AGENT,
                agents.c.status == _const(AgentStatus.OFFLINE),
                agents.c.load == 0,
            )
            .values(deleted_at=now, updated_at=now)
        )
        if _rowcount(await self._stamped(stmt)) != 1:
            return False
        await self._unindex(agent_id)
        return True

    async def page(
        self, *, limit: int, after_id: str | None, state: AgentState | None, skill: str | None
    ) -> list[Agent]:
        stmt = sa.select(agents).where(_LIVE_AGENT).order_by(agents.c.id).limit(limit)
        if after_id is not None:
            stmt = stmt.where(agents.c.id > after_id)
        if state is not None:
            stmt = stmt.where(agent_state_clause(state))
        if skill is not None:
            stmt = stmt.where(
                sa.exists().where(
                    agent_skills.c.agent_id == agents.c.id, agent_skills.c.skill == skill
                )
            )
        return [_agent(r) for r in await self._conn.execute(stmt)]

    async def candidates_for(
        self, handoff: Handoff, limit: int, window: int = QUALITY_WINDOW
    ) -> list[Candidate]:
        skills, language = handoff.request.required_skills, handoff.request.language
        params = _qualified_params(skills, language) | {
            "p_handoff_id": handoff.id,
            "p_limit": limit,
        }
        least = handoff.agent_order is AgentOrder.LEAST_EXPERT
        # Kept from experts now: only agents below the plan's expert level.
        reserve = handoff.closed_to(MAX_PROFICIENCY, self._now)
        if reserve:
            params["p_expert_level"] = handoff.plan.expert_level
        quality = handoff.quality_ranked
        if quality:
            params["p_interaction_type"] = handoff.request.interaction_type
            params["p_window"] = window
        stmt = _candidates(len(skills), language is not None, least, reserve, quality)
        rows = await self._conn.execute(stmt, params)
        if not quality:
            return [Candidate(_agent(r)) for r in rows]
        return [Candidate(_agent(r), _standing(r)) for r in rows]

    async def online_below(
        self, skills: tuple[SkillRequirement, ...], language: str | None, level: int
    ) -> bool:
        stmt = _online_below(len(skills), language is not None)
        params = _qualified_params(skills, language) | {"p_expert_level": level}
        return bool((await self._conn.execute(stmt, params)).scalar())

    async def supply_for(
        self, skills: tuple[SkillRequirement, ...], language: str | None
    ) -> EligibleSupply:
        stmt = _supply(len(skills), language is not None)
        params = _qualified_params(skills, language)
        capacity, online = (await self._conn.execute(stmt, params)).one()
        return EligibleSupply(capacity=int(capacity), agents=int(online))

    async def set_presence(self, agent_id: str, *, status: AgentStatus, connected: bool) -> Agent:
        values: dict[str, Any] = {"status": status.value, "connected": connected}
        if status is AgentStatus.OFFLINE:
            values["consecutive_misses"] = 0
        stmt = (
            _stamped_agent_update()
            .where(agents.c.id == agent_id)
            .values(**values)
            .returning(*agents.c)
        )
        return _agent((await self._stamped(stmt)).one())

    async def set_status(
        self, agent_id: str, status: AgentStatus, reason: StatusChangeReason, *, reset_misses: bool
    ) -> Agent | None:
        values: dict[str, Any] = {"status": status.value, "status_reason": reason.value}
        if reset_misses:
            values["consecutive_misses"] = 0
        stmt = (
            _stamped_agent_update()
            .where(
                agents.c.id == agent_id,
                agents.c.status != _const(AgentStatus.OFFLINE),
                agents.c.connected == sa.true(),
            )
            .values(**values)
            .returning(*agents.c)
        )
        row = (await self._stamped(stmt)).first()
        return _agent(row) if row else None

    async def reserve(self, agent_id: str) -> bool:
        return _rowcount(await self._stamped(_reserve_slot(), id=agent_id)) == 1

    async def release(self, agent_id: str, slots: int = 1) -> Agent | None:
        # No clamping: releasing more than was reserved is a bug the check constraint refuses.
        row = (await self._stamped(_release_slots(), id=agent_id, slots=slots)).first()
        return _agent(row) if row else None

    async def record_assignment(self, agent_id: str, now: datetime) -> None:
        await self._stamped(_record_assignment(), id=agent_id, now=now)

    async def changed_since(self, since: datetime) -> list[str]:
        stmt = sa.select(agents.c.id).where(
            agents.c.changed_at >= since, agents.c.changed_by != self._writer
        )
        return list((await self._conn.execute(stmt)).scalars())

    async def set_misses(self, agent_id: str, misses: int) -> None:
        await self._stamped(
            _stamped_agent_update().where(agents.c.id == agent_id).values(consecutive_misses=misses)
        )


# --- handoffs -----------------------------------------------------------------------------


def _handoff(row: sa.Row[Any]) -> Handoff:
    m = row._mapping
    completion = None
    if m["outcome"] is not None:
        completion = Completion(
            outcome=Outcome(m["outcome"]),
            disposition_code=m["disposition_code"],
            notes=m["notes"],
        )
    return Handoff(
        id=m["id"],
        request=HandoffRequest(
            request_id=m["request_id"],
            conversation_id=m["conversation_id"],
            customer_id=m["customer_id"],
            interaction_type=m["interaction_type"],
            required_skills=_skills_from(m["required_skills"]),
            language=m["language"],
            urgency=Urgency(m["urgency"]),
            summary=m["summary"],
            reason=HandoffReason(m["reason"]),
            preferred_agent_id=m["preferred_agent_id"],
        ),
        fingerprint=m["fingerprint"],
        state=HandoffState(m["state"]),
        created_at=m["created_at"],
        deadline=m["deadline"],
        requeue_count=m["requeue_count"],
        agent_id=m["agent_id"],
        offer_id=m["offer_id"],
        assigned_at=m["assigned_at"],
        ended_at=m["ended_at"],
        completion=completion,
        bot_id=m["bot_id"],
        routing=m["routing"],
        plan=WaitPlan(
            expires_at=m["expires_at"],
            offer_timeout=(
                None
                if m["offer_timeout_seconds"] is None
                else timedelta(seconds=m["offer_timeout_seconds"])
            ),
            steps=tuple(
                PlannedStep(timedelta(seconds=after), _skills_from(skills), note)
                for after, skills, note in m["relaxation"] or ()
            ),
            step=m["relax_step"],
            preferred_agent_id=m["preferred_agent_id"],
            preferred_until=m["preferred_until"],
            expert_level=m["expert_level"],
            experts_from=m["experts_from"],
        ),
        end_reason=m["end_reason"],
        agent_order=AgentOrder(m["agent_order"]),
        feedback=(
            None
            if m["csat"] is None
            else Feedback(m["csat"], tuple(m["feedback_tags"] or ()), bool(m["contacted_again"]))
        ),
        feedback_at=m["feedback_at"],
        risk_class=None if m["risk_class"] is None else RiskClass[m["risk_class"]],
        quality_ranked=bool(m["quality_ranked"]),
    )


def _skills_to(skills: tuple[SkillRequirement, ...]) -> list[list[Any]]:
    """Skills as stored: [skill, minimum] pairs, [skill, minimum, true] for optional ones."""
    return [
        [r.skill, r.min_proficiency, True] if r.optional else [r.skill, r.min_proficiency]
        for r in skills
    ]


def _skills_from(stored: list[list[Any]]) -> tuple[SkillRequirement, ...]:
    return tuple(SkillRequirement(r[0], r[1], len(r) > 2 and bool(r[2])) for r in stored)


def _plan_values(handoff: Handoff, plan: WaitPlan) -> dict[str, Any]:
    """The wait plan's columns (`handoff` gives the moment its steps count from)."""
    return {
        "expires_at": plan.expires_at,
        "offer_timeout_seconds": (
            None if plan.offer_timeout is None else plan.offer_timeout.total_seconds()
        ),
        "relaxation": [
            [step.after.total_seconds(), _skills_to(step.skills), step.note] for step in plan.steps
        ]
        or None,
        "relax_step": plan.step,
        "preferred_until": plan.preferred_until,
        "expert_level": plan.expert_level,
        "experts_from": plan.experts_from,
        "review_at": replace(handoff, plan=plan).review_at,
    }


_QUEUE_ORDER = (handoffs.c.deadline, handoffs.c.created_at, handoffs.c.id)


@_statement
def _insert_new(table: sa.Table, dialect: str) -> sa.Insert:
    """An INSERT that does nothing (no row) where a unique key is taken, so a duplicate
    costs no savepoint: ON CONFLICT DO NOTHING on both SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


@_statement
def _row_by(table: sa.Table, column: str, *, lock: bool = False) -> sa.Select[Any]:
    stmt = sa.select(table).where(table.c[column] == _p(column))
    return stmt.with_for_update() if lock else stmt  # PostgreSQL; SQLite ignores it


def _handoff_update(*where: sa.ColumnElement[bool], **values: Any) -> sa.Update:
    """A conditional UPDATE of handoff `p_id` that stamps the change feed."""
    return (
        sa.update(handoffs)
        .where(handoffs.c.id == _p("id"), *where)
        .values(changed_at=_p("changed_at"), changed_by=_p("changed_by"), **values)
        .returning(*handoffs.c)
    )


_INSERT_HANDOFF_SKILLS = sa.insert(handoff_skills).execution_options(**{PREPARED: True})
_IS_QUEUED = handoffs.c.state == _const(HandoffState.QUEUED)
_OFFERED_AS = sa.and_(
    handoffs.c.state == _const(HandoffState.OFFERED), handoffs.c.offer_id == _p("offer_id")
)
_ASSIGNED_AS = sa.and_(
    handoffs.c.state == _const(HandoffState.ASSIGNED), handoffs.c.offer_id == _p("offer_id")
)


@_statement
def _offer_handoff() -> sa.Update:
    return _handoff_update(
        _IS_QUEUED,
        state=HandoffState.OFFERED.value,
        agent_id=_p("agent_id"),
        offer_id=_p("new_offer_id"),
    )


@_statement
def _return_handoff(keep_hold: bool) -> sa.Update:
    values: dict[str, Any] = {}
    if not keep_hold:  # the known agent had its offer: the wait for it is over
        values["preferred_until"] = sa.case(
            (handoffs.c.preferred_agent_id == handoffs.c.agent_id, None),
            else_=handoffs.c.preferred_until,
        )
    return _handoff_update(
        _OFFERED_AS, state=HandoffState.QUEUED.value, agent_id=None, offer_id=None, **values
    )


@_statement
def _assign_handoff() -> sa.Update:
    return _handoff_update(_OFFERED_AS, state=HandoffState.ASSIGNED.value, assigned_at=_p("now"))


@_statement
def _requeue_handoff() -> sa.Update:
    return _handoff_update(
        _ASSIGNED_AS,
        state=HandoffState.QUEUED.value,
        agent_id=None,
        offer_id=None,
        assigned_at=None,
        deadline=_p("deadline"),
        requeue_count=handoffs.c.requeue_count + 1,
        expires_at=_p("expires_at"),
        preferred_until=_p("preferred_until"),
        experts_from=_p("experts_from"),
        review_at=_p("review_at"),
    )


@_statement
def _replan_handoff(relaxed: bool) -> sa.Update:
    values: dict[str, Any] = {"required_skills": _p("required_skills")} if relaxed else {}
    return _handoff_update(
        _IS_QUEUED,
        handoffs.c.relax_step == _p("old_step", sa.Integer()),
        relax_step=_p("step"),
        preferred_until=_p("preferred_until"),
        experts_from=_p("experts_from"),
        review_at=_p("review_at"),
        routing=_p("routing"),
        **values,
    )


@_statement
def _expire_handoff() -> sa.Update:
    return _handoff_update(
        _IS_QUEUED,
        state=HandoffState.EXPIRED.value,
        ended_at=_p("now"),
        end_reason=_p("end_reason"),
        review_at=None,
        preferred_until=None,
        experts_from=None,
    )


@_statement
def _record_feedback() -> sa.Update:
    return _handoff_update(
        handoffs.c.state == _const(HandoffState.COMPLETED),
        handoffs.c.feedback_fingerprint.is_(None),
        csat=_p("csat"),
        feedback_tags=_p("feedback_tags"),
        contacted_again=_p("contacted_again"),
        feedback_at=_p("now"),
        feedback_fingerprint=_p("feedback_fingerprint"),
    )


@_statement
def _due_for_review() -> sa.Select[Any]:
    return (
        sa.select(handoffs)
        .where(_IS_QUEUED, handoffs.c.review_at.is_not(None), handoffs.c.review_at <= _p("now"))
        .order_by(handoffs.c.review_at)
        .limit(_p("limit"))
    )


@_statement
def _end_holds() -> sa.Update:
    return (
        sa.update(handoffs)
        .where(
            handoffs.c.preferred_until.is_not(None),
            handoffs.c.preferred_agent_id == _p("agent_id"),
            handoffs.c.preferred_until > _p("now"),
            _IS_QUEUED,
        )
        .values(
            preferred_until=None,
            changed_at=_p("changed_at"),
            changed_by=_p("changed_by"),
        )
        .returning(*handoffs.c)
    )


@_statement
def _complete_handoff() -> sa.Update:
    return _handoff_update(
        _ASSIGNED_AS,
        state=HandoffState.COMPLETED.value,
        ended_at=_p("now"),
        outcome=_p("outcome"),
        disposition_code=_p("disposition_code"),
        notes=_p("notes"),
        completion_fingerprint=_p("fingerprint"),
        handle_seconds=_p("handle_seconds"),
    )


@_statement
def _cancel_handoff(offered: bool) -> sa.Update:
    return _handoff_update(
        _OFFERED_AS if offered else _IS_QUEUED,
        state=HandoffState.CANCELLED.value,
        ended_at=_p("now"),
    )


@_statement
def _queued_for(languages: int) -> sa.Select[Any]:
    """Queued handoffs agent `p_agent_id` may take: all skills met, a language it speaks
    (`p_language<i>`) or none, not declined or missed by it, not held for another agent,
    and held for it or not keeping its level of expertise (`p_expertise`) back."""
    mine = _AGENTS_SKILLS
    unmet = (
        sa.select(sa.literal(1))
        .select_from(handoff_skills)
        .where(
            handoff_skills.c.handoff_id == handoffs.c.id,
            ~sa.exists().where(
                mine.c.agent_id == _p("agent_id"),
                mine.c.skill == handoff_skills.c.skill,
                mine.c.proficiency >= handoff_skills.c.min_proficiency,
            ),
        )
    )
    excluded = sa.exists().where(
        offers.c.handoff_id == handoffs.c.id,
        offers.c.agent_id == _p("agent_id"),
        offers.c.state.in_([_const(s) for s in _MISSED]),
    )
    language_ok: sa.ColumnElement[bool] = handoffs.c.language.is_(None)
    if languages:
        spoken = [_p(f"language{i}") for i in range(languages)]
        language_ok = sa.or_(language_ok, handoffs.c.language.in_(spoken))
    not_held = sa.or_(handoffs.c.preferred_until.is_(None), handoffs.c.preferred_until <= _p("now"))
    open_to = sa.or_(
        # held for this agent, its known agent
        sa.and_(~not_held, handoffs.c.preferred_agent_id == _p("agent_id")),
        # held for nobody, and not keeping experts of the agent's level (`p_expertise`) back
        sa.and_(
            not_held,
            sa.or_(
                handoffs.c.experts_from.is_(None),
                handoffs.c.experts_from <= _p("now"),
                handoffs.c.expert_level > _p("expertise", sa.Integer()),
            ),
        ),
    )
    return (
        sa.select(handoffs)
        .where(_IS_QUEUED, language_ok, open_to, ~sa.exists(unmet), ~excluded)
        .order_by(*_QUEUE_ORDER)
        .limit(_p("limit"))
    )


@_statement
def _queued_since() -> sa.Select[Any]:
    # Through the live queue's partial index, never along all handoffs by creation.
    queued_by = _unindexed(handoffs.c.created_at) <= _p("moment")
    return sa.select(sa.exists().where(_IS_QUEUED, queued_by))


@_statement
def _queue_position() -> sa.Select[Any]:
    mine = sa.tuple_(*(_p(c.name, c.type) for c in _QUEUE_ORDER))
    return sa.select(sa.func.count()).where(
        handoffs.c.state.in_([_const(s) for s in _WAITING]), sa.tuple_(*_QUEUE_ORDER) < mine
    )


@_statement
def _competing_ahead(skills: int) -> sa.Select[Any]:
    """How many queued handoffs before (`p_deadline`, `p_created_at`, `p_id`) need one of
    the skills `p_skill<i>`, or none; with no skills given, all of them. (Offered ones hold
    their agent's slot already: they wait for no slot to free up.)"""
    mine = sa.tuple_(*(_p(c.name, c.type) for c in _QUEUE_ORDER))
    where: list[sa.ColumnElement[bool]] = [_IS_QUEUED, sa.tuple_(*_QUEUE_ORDER) < mine]
    if skills:
        theirs = handoff_skills.c.handoff_id == handoffs.c.id
        shared = handoff_skills.c.skill.in_([_p(f"skill{i}", sa.String()) for i in range(skills)])
        where.append(sa.or_(~sa.exists().where(theirs), sa.exists().where(theirs, shared)))
    return sa.select(sa.func.count()).select_from(handoffs).where(*where)


class SqlHandoffRepository:
    """Handoffs on SQL."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def get(self, handoff_id: str) -> Handoff | None:
        row = (await self._conn.execute(_row_by(handoffs, "id"), {"p_id": handoff_id})).first()
        return _handoff(row) if row else None

    async def get_by_request_id(self, request_id: str) -> Handoff | None:
        stmt = _row_by(handoffs, "request_id")
        row = (await self._conn.execute(stmt, {"p_request_id": request_id})).first()
        return _handoff(row) if row else None

    async def insert(self, handoff: Handoff) -> None:
        req = handoff.request
        values = {
            "id": handoff.id,
            "request_id": req.request_id,
            "fingerprint": handoff.fingerprint,
            "conversation_id": req.conversation_id,
            "customer_id": req.customer_id,
            "interaction_type": req.interaction_type,
            "required_skills": _skills_to(req.required_skills),
            "language": req.language,
            "urgency": int(req.urgency),
            "reason": req.reason.value,
            "summary": req.summary,
            "state": handoff.state.value,
            "created_at": handoff.created_at,
            "deadline": handoff.deadline,
            "requeue_count": handoff.requeue_count,
            "bot_id": handoff.bot_id,
            "routing": handoff.routing,
            "preferred_agent_id": req.preferred_agent_id,
            "end_reason": handoff.end_reason,
            "agent_order": handoff.agent_order.value,
            "risk_class": None if handoff.risk_class is None else handoff.risk_class.name,
            "quality_ranked": handoff.quality_ranked,
            "changed_at": self._now,
            "changed_by": self._writer,
            **_plan_values(handoff, handoff.plan),
        }
        inserted = await self._conn.execute(_insert_new(handoffs, self._conn.dialect.name), values)
        if _rowcount(inserted) != 1:
            raise DuplicateKey(req.request_id)
        await self._insert_skills(handoff.id, req.required_skills)

    async def _insert_skills(self, handoff_id: str, skills: tuple[SkillRequirement, ...]) -> None:
        if skills:
            await self._conn.execute(
                _INSERT_HANDOFF_SKILLS,
                [
                    {
                        "handoff_id": handoff_id,
                        "skill": r.skill,
                        "min_proficiency": r.min_proficiency,
                    }
                    for r in skills
                ],
            )

    async def _transition(self, stmt: sa.Update, handoff_id: str, **params: Any) -> Handoff | None:
        """Runs one of the prepared `_handoff_update` statements."""
        values = {f"p_{k}": v for k, v in params.items()}
        values.update(p_id=handoff_id, p_changed_at=self._now, p_changed_by=self._writer)
        row = (await self._conn.execute(stmt, values)).first()
        return _handoff(row) if row else None

    async def offer(self, handoff_id: str, agent_id: str, offer_id: str) -> Handoff | None:
        return await self._transition(
            _offer_handoff(), handoff_id, agent_id=agent_id, new_offer_id=offer_id
        )

    async def return_to_queue(
        self, handoff_id: str, offer_id: str, *, keep_hold: bool = False
    ) -> Handoff | None:
        stmt = _return_handoff(keep_hold)
        return await self._transition(stmt, handoff_id, offer_id=offer_id)

    async def assign(self, handoff_id: str, offer_id: str, now: datetime) -> Handoff | None:
        return await self._transition(_assign_handoff(), handoff_id, offer_id=offer_id, now=now)

    async def requeue(
        self, handoff: Handoff, offer_id: str, deadline: datetime, plan: WaitPlan
    ) -> Handoff | None:
        values = _plan_values(replace(handoff, deadline=deadline), plan)
        return await self._transition(
            _requeue_handoff(),
            handoff.id,
            offer_id=offer_id,
            deadline=deadline,
            expires_at=values["expires_at"],
            preferred_until=values["preferred_until"],
            experts_from=values["experts_from"],
            review_at=values["review_at"],
        )

    async def replan(
        self,
        handoff: Handoff,
        plan: WaitPlan,
        skills: tuple[SkillRequirement, ...] | None,
        routing: str,
    ) -> Handoff | None:
        values = _plan_values(handoff, plan)
        params: dict[str, Any] = {
            "step": plan.step,
            "old_step": handoff.plan.step,
            "preferred_until": values["preferred_until"],
            "experts_from": values["experts_from"],
            "review_at": values["review_at"],
            "routing": routing[:1000],
        }
        if skills is None:
            return await self._transition(_replan_handoff(False), handoff.id, **params)
        replanned = await self._transition(
            _replan_handoff(True), handoff.id, required_skills=_skills_to(skills), **params
        )
        if replanned is not None:
            await self._conn.execute(
                sa.delete(handoff_skills).where(handoff_skills.c.handoff_id == handoff.id)
            )
            await self._insert_skills(handoff.id, skills)
        return replanned

    async def expire(self, handoff_id: str, now: datetime, reason: str) -> Handoff | None:
        return await self._transition(
            _expire_handoff(), handoff_id, now=now, end_reason=reason[:500]
        )

    async def completed_page(
        self, query: OutcomeQuery, after: tuple[datetime, str] | None, limit: int
    ) -> list[Handoff]:
        h = handoffs.c
        stmt = (
            sa.select(handoffs)
            .where(
                h.state == _const(HandoffState.COMPLETED),
                h.ended_at >= query.since,
                h.ended_at < query.until,
            )
            .order_by(h.ended_at, h.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(sa.tuple_(h.ended_at, h.id) > sa.tuple_(*after))
        if query.interaction_type is not None:
            stmt = stmt.where(h.interaction_type == query.interaction_type)
        if query.outcomes:
            stmt = stmt.where(h.outcome.in_(sorted(o.value for o in query.outcomes)))
        if query.only_failures:
            stmt = stmt.where(
                sa.or_(
                    h.outcome != Outcome.RESOLVED.value,
                    h.csat <= 2,
                    h.contacted_again == sa.true(),
                )
            )
        if query.max_csat is not None:
            stmt = stmt.where(h.csat <= query.max_csat)
        return [_handoff(r) for r in await self._conn.execute(stmt)]

    async def record_feedback(
        self, handoff_id: str, feedback: Feedback, now: datetime
    ) -> Handoff | None:
        return await self._transition(
            _record_feedback(),
            handoff_id,
            csat=feedback.csat,
            feedback_tags=list(feedback.reason_tags),
            contacted_again=feedback.contacted_again,
            now=now,
            feedback_fingerprint=feedback.fingerprint(),
        )

    async def due_for_review(self, now: datetime, limit: int) -> list[Handoff]:
        rows = await self._conn.execute(_due_for_review(), {"p_now": now, "p_limit": limit})
        return [_handoff(r) for r in rows]

    async def end_holds_for(self, agent_id: str) -> list[Handoff]:
        rows = await self._conn.execute(
            _end_holds(),
            {
                "p_agent_id": agent_id,
                "p_now": self._now,
                "p_changed_at": self._now,
                "p_changed_by": self._writer,
            },
        )
        return [_handoff(r) for r in rows]

    async def complete(
        self,
        handoff_id: str,
        offer_id: str,
        completion: Completion,
        *,
        now: datetime,
        handle_time: timedelta,
    ) -> Handoff | None:
        return await self._transition(
            _complete_handoff(),
            handoff_id,
            offer_id=offer_id,
            now=now,
            outcome=completion.outcome.value,
            disposition_code=completion.disposition_code,
            notes=completion.notes,
            fingerprint=completion.fingerprint(),
            handle_seconds=handle_time.total_seconds(),
        )

    async def cancel(self, handoff_id: str, offer_id: str | None, now: datetime) -> Handoff | None:
        # Only as seen: queued, or offered with this very offer.
        stmt = _cancel_handoff(offered=offer_id is not None)
        return await self._transition(stmt, handoff_id, offer_id=offer_id, now=now)

    async def completion_fingerprint(self, handoff_id: str) -> str | None:
        stmt = sa.select(handoffs.c.completion_fingerprint).where(handoffs.c.id == handoff_id)
        value: str | None = (await self._conn.execute(stmt)).scalar()
        return value

    async def queued_for_agent(self, agent: Agent, limit: int) -> list[Handoff]:
        spoken = sorted(agent.profile.languages)
        params: dict[str, Any] = {
            "p_agent_id": agent.id,
            "p_limit": limit,
            "p_now": self._now,
            "p_expertise": agent.expertise,
        }
        params.update({f"p_language{i}": language for i, language in enumerate(spoken)})
        rows = await self._conn.execute(_queued_for(len(spoken)), params)
        return [_handoff(r) for r in rows]

    async def queued_since(self, moment: datetime) -> bool:
        found = await self._conn.execute(_queued_since(), {"p_moment": moment})
        return bool(found.scalar())

    async def position(self, handoff: Handoff) -> int:
        params = {
            "p_deadline": handoff.deadline,
            "p_created_at": handoff.created_at,
            "p_id": handoff.id,
        }
        ahead = int((await self._conn.execute(_queue_position(), params)).scalar_one())
        return ahead + 1

    async def changed_since(self, since: datetime) -> list[str]:
        stmt = sa.select(handoffs.c.id).where(
            handoffs.c.changed_at >= since, handoffs.c.changed_by != self._writer
        )
        return list((await self._conn.execute(stmt)).scalars())

    async def competing_ahead(self, handoff: Handoff) -> int:
        skills = sorted({r.skill for r in handoff.request.required_skills})
        params: dict[str, Any] = {
            "p_deadline": handoff.deadline,
            "p_created_at": handoff.created_at,
            "p_id": handoff.id,
        }
        params.update({f"p_skill{i}": skill for i, skill in enumerate(skills)})
        stmt = _competing_ahead(len(skills))
        return int((await self._conn.execute(stmt, params)).scalar_one())

    async def mean_handle_time(
        self, since: datetime, limit: int, interaction_type: str | None = None
    ) -> timedelta | None:
        # The latest completions only (ix_handoffs_completed, ix_handoffs_completed_type): a
        # busy hour holds a hundred thousand.
        latest = (
            sa.select(handoffs.c.handle_seconds)
            .where(handoffs.c.state == _const(HandoffState.COMPLETED), handoffs.c.ended_at >= since)
            .order_by(handoffs.c.ended_at.desc())
            .limit(limit)
        )
        if interaction_type is not None:
            latest = latest.where(handoffs.c.interaction_type == interaction_type)
        recent = latest.subquery()
        mean = (await self._conn.execute(sa.select(sa.func.avg(recent.c.handle_seconds)))).scalar()
        return None if mean is None else timedelta(seconds=float(mean))


# --- offers -------------------------------------------------------------------------------


def _offer(row: sa.Row[Any]) -> Offer:
    m = row._mapping
    return Offer(
        id=m["id"],
        handoff_id=m["handoff_id"],
        agent_id=m["agent_id"],
        state=OfferState(m["state"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        decided_at=m["decided_at"],
        decline_reason=DeclineReason(m["decline_reason"]) if m["decline_reason"] else None,
        rescind_reason=RescindReason(m["rescind_reason"]) if m["rescind_reason"] else None,
        ranking=m["ranking"],
    )


def _offer_update(*where: sa.ColumnElement[bool], **values: Any) -> sa.Update:
    """A conditional UPDATE of offer `p_id`."""
    return (
        sa.update(offers)
        .where(offers.c.id == _p("id"), *where)
        .values(**values)
        .returning(*offers.c)
    )


_PENDING = offers.c.state == _const(OfferState.PENDING)
_RANKING_LENGTH: int = offers.c.ranking.type.length  # type: ignore[attr-defined]


@_statement
def _accept_offer() -> sa.Update:
    return _offer_update(
        offers.c.agent_id == _p("agent_id"),
        _PENDING,
        offers.c.expires_at > _p("now"),
        state=OfferState.ACCEPTED.value,
        decided_at=_p("now"),
    )


@_statement
def _decline_offer() -> sa.Update:
    return _offer_update(
        offers.c.agent_id == _p("agent_id"),
        _PENDING,
        state=OfferState.DECLINED.value,
        decided_at=_p("now"),
        ended_at=_p("now"),
        decline_reason=_p("reason"),
    )


@_statement
def _expire_offer() -> sa.Update:
    return _offer_update(
        _PENDING,
        offers.c.expires_at <= _p("now"),
        state=OfferState.EXPIRED.value,
        ended_at=_p("now"),
        rescind_reason=RescindReason.EXPIRED.value,
    )


@_statement
def _rescind_offer() -> sa.Update:
    return _offer_update(
        _PENDING, state=OfferState.RESCINDED.value, ended_at=_p("now"), rescind_reason=_p("reason")
    )


@_statement
def _finish_offer() -> sa.Update:
    return _offer_update(
        offers.c.state == _const(OfferState.ACCEPTED), state=_p("state"), ended_at=_p("now")
    )


@_statement
def _offers_of_agent(state: OfferState) -> sa.Select[Any]:
    return (
        sa.select(offers)
        .where(offers.c.agent_id == _p("agent_id"), offers.c.state == _const(state))
        .order_by(offers.c.created_at, offers.c.id)
    )


@_statement
def _offers_of_handoff() -> sa.Select[Any]:
    return (
        sa.select(offers)
        .where(offers.c.handoff_id == _p("handoff_id"))
        .order_by(offers.c.created_at, offers.c.id)
    )


class SqlOfferRepository:
    """Offers on SQL."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def get(self, offer_id: str, *, lock: bool = False) -> Offer | None:
        # Locked on PostgreSQL; SQLite's one writer serializes anyway.
        stmt = _row_by(offers, "id", lock=lock)
        row = (await self._conn.execute(stmt, {"p_id": offer_id})).first()
        return _offer(row) if row else None

    async def insert(self, offer: Offer) -> None:
        values = {
            "id": offer.id,
            "handoff_id": offer.handoff_id,
            "agent_id": offer.agent_id,
            "state": offer.state.value,
            "created_at": offer.created_at,
            "expires_at": offer.expires_at,
            "ranking": offer.ranking[:_RANKING_LENGTH],  # many long skill names: cut short
        }
        inserted = await self._conn.execute(_insert_new(offers, self._conn.dialect.name), values)
        if _rowcount(inserted) != 1:
            raise DuplicateKey(offer.handoff_id)

    async def _transition(self, stmt: sa.Update, offer_id: str, **params: Any) -> Offer | None:
        """Runs one of the prepared `_offer_update` statements."""
        values = {f"p_{k}": v for k, v in params.items()}
        values["p_id"] = offer_id
        row = (await self._conn.execute(stmt, values)).first()
        return _offer(row) if row else None

    async def accept(self, offer_id: str, agent_id: str, now: datetime) -> Offer | None:
        return await self._transition(_accept_offer(), offer_id, agent_id=agent_id, now=now)

    async def decline(
        self, offer_id: str, agent_id: str, reason: DeclineReason, now: datetime
    ) -> Offer | None:
        return await self._transition(
            _decline_offer(), offer_id, agent_id=agent_id, now=now, reason=reason.value
        )

    async def expire(self, offer_id: str, now: datetime) -> Offer | None:
        return await self._transition(_expire_offer(), offer_id, now=now)

    async def rescind(self, offer_id: str, reason: RescindReason, now: datetime) -> Offer | None:
        return await self._transition(_rescind_offer(), offer_id, now=now, reason=reason.value)

    async def finish(self, offer_id: str, state: OfferState, now: datetime) -> Offer | None:
        return await self._transition(_finish_offer(), offer_id, state=state.value, now=now)

    async def _for_agent(self, agent_id: str, state: OfferState) -> list[Offer]:
        stmt = _offers_of_agent(state)
        return [_offer(r) for r in await self._conn.execute(stmt, {"p_agent_id": agent_id})]

    async def for_handoff(self, handoff_id: str) -> list[Offer]:
        rows = await self._conn.execute(_offers_of_handoff(), {"p_handoff_id": handoff_id})
        return [_offer(r) for r in rows]

    async def pending_for_agent(self, agent_id: str) -> list[Offer]:
        return await self._for_agent(agent_id, OfferState.PENDING)

    async def accepted_for_agent(self, agent_id: str) -> list[Offer]:
        return await self._for_agent(agent_id, OfferState.ACCEPTED)

    async def due_to_expire(self, now: datetime, limit: int) -> list[Offer]:
        stmt = (
            sa.select(offers)
            .where(offers.c.state == _const(OfferState.PENDING), offers.c.expires_at <= now)
            .order_by(offers.c.expires_at)
            .limit(limit)
        )
        return [_offer(r) for r in await self._conn.execute(stmt)]

    async def mean_answer_time(self, since: datetime, limit: int) -> timedelta | None:
        # The mean in Python: time arithmetic differs between SQLite's text and PostgreSQL.
        stmt = (
            sa.select(offers.c.created_at, offers.c.decided_at)
            .where(
                offers.c.state.in_([_const(OfferState.ACCEPTED), _const(OfferState.COMPLETED)]),
                offers.c.decided_at >= since,
            )
            .order_by(offers.c.decided_at.desc())
            .limit(limit)
        )
        answers = [decided - made for made, decided in await self._conn.execute(stmt)]
        return sum(answers, timedelta(0)) / len(answers) if answers else None


# --- sessions -----------------------------------------------------------------------------


def _session(row: sa.Row[Any]) -> Session:
    m = row._mapping
    return Session(
        id=m["id"],
        agent_id=m["agent_id"],
        state=SessionState(m["state"]),
        token_hash=m["token_hash"],
        replica_id=m["replica_id"],
        connection_id=m["connection_id"],
        created_at=m["created_at"],
        disconnected_at=m["disconnected_at"],
        grace_expires_at=m["grace_expires_at"],
        ended_at=m["ended_at"],
        end_reason=SessionEndReason(m["end_reason"]) if m["end_reason"] else None,
    )


class SqlSessionRepository:
    """Agent sessions on SQL."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def _one(self, *where: sa.ColumnElement[bool]) -> Session | None:
        row = (await self._conn.execute(sa.select(sessions).where(*where))).first()
        return _session(row) if row else None

    async def get(self, session_id: str) -> Session | None:
        return await self._one(sessions.c.id == session_id)

    async def get_by_token_hash(self, token_hash: str) -> Session | None:
        return await self._one(sessions.c.token_hash == token_hash)

    async def live_for_agent(self, agent_id: str) -> Session | None:
        return await self._one(
            sessions.c.agent_id == agent_id, sessions.c.state != _const(SessionState.ENDED)
        )

    async def insert(self, session: Session) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    sa.insert(sessions).values(
                        id=session.id,
                        agent_id=session.agent_id,
                        state=session.state.value,
                        token_hash=session.token_hash,
                        replica_id=session.replica_id,
                        connection_id=session.connection_id,
                        created_at=session.created_at,
                    )
                )
        except IntegrityError as exc:
            raise DuplicateKey(session.agent_id) from exc

    async def _transition(
        self, session_id: str, where: list[sa.ColumnElement[bool]], **values: Any
    ) -> Session | None:
        stmt = (
            sa.update(sessions)
            .where(sessions.c.id == session_id, *where)
            .values(**values)
            .returning(*sessions.c)
        )
        row = (await self._conn.execute(stmt)).first()
        return _session(row) if row else None

    async def reconnect(
        self, session_id: str, replica_id: str, connection_id: str
    ) -> Session | None:
        return await self._transition(
            session_id,
            [sessions.c.state != _const(SessionState.ENDED)],
            state=SessionState.CONNECTED.value,
            replica_id=replica_id,
            connection_id=connection_id,
            disconnected_at=None,
            grace_expires_at=None,
        )

    async def disconnect(
        self, session_id: str, connection_id: str, now: datetime, grace_expires_at: datetime
    ) -> Session | None:
        return await self._transition(
            session_id,
            [
                sessions.c.state == _const(SessionState.CONNECTED),
                sessions.c.connection_id == connection_id,
            ],
            state=SessionState.DISCONNECTED.value,
            disconnected_at=now,
            grace_expires_at=grace_expires_at,
        )

    async def end(self, session_id: str, reason: SessionEndReason, now: datetime) -> Session | None:
        return await self._transition(
            session_id,
            [sessions.c.state != _const(SessionState.ENDED)],
            state=SessionState.ENDED.value,
            ended_at=now,
            end_reason=reason.value,
        )

    async def grace_expired(self, now: datetime, limit: int) -> list[Session]:
        stmt = (
            sa.select(sessions)
            .where(
                sessions.c.state == _const(SessionState.DISCONNECTED),
                sessions.c.grace_expires_at <= now,
            )
            .order_by(sessions.c.grace_expires_at)
            .limit(limit)
        )
        return [_session(r) for r in await self._conn.execute(stmt)]

    async def connected_on(self, replica_id: str) -> list[Session]:
        stmt = sa.select(sessions).where(
            sessions.c.state == _const(SessionState.CONNECTED), sessions.c.replica_id == replica_id
        )
        return [_session(r) for r in await self._conn.execute(stmt)]


# --- replicas -----------------------------------------------------------------------------


APPLICATION_NAME = "humanline"  # PostgreSQL connections' application_name starts with it


class SqlReplicaRepository:
    """Replicas and their heartbeats, on the transaction's clock."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def register(self, replica_id: str, host: str, pid: int) -> None:
        await self._conn.execute(
            sa.insert(replicas).values(
                id=replica_id, host=host, pid=pid, started_at=self._now, heartbeat_at=self._now
            )
        )

    async def heartbeat(self, replica_id: str) -> bool:
        stmt = (
            sa.update(replicas)
            .where(replicas.c.id == replica_id, replicas.c.stopped_at.is_(None))
            .values(heartbeat_at=self._now)
        )
        return _rowcount(await self._conn.execute(stmt)) == 1

    async def revive(self, replica_id: str) -> None:
        await self._conn.execute(
            sa.update(replicas)
            .where(replicas.c.id == replica_id)
            .values(heartbeat_at=self._now, stopped_at=None)
        )

    async def stop(self, replica_id: str) -> None:
        await self._conn.execute(
            sa.update(replicas)
            .where(replicas.c.id == replica_id, replicas.c.stopped_at.is_(None))
            .values(stopped_at=self._now)
        )

    async def reap(self, silent_since: datetime, keep: str) -> list[str]:
        stmt = (
            sa.update(replicas)
            .where(
                replicas.c.stopped_at.is_(None),
                replicas.c.heartbeat_at < silent_since,
                replicas.c.id != keep,
            )
            .values(stopped_at=self._now)
            .returning(replicas.c.id)
        )
        return list((await self._conn.execute(stmt)).scalars())

    async def live(self) -> list[str]:
        stmt = sa.select(replicas.c.id).where(replicas.c.stopped_at.is_(None))
        return list((await self._conn.execute(stmt)).scalars())

    async def oldest_transaction_start(self) -> datetime | None:
        if self._conn.dialect.name != "postgresql":
            return None  # SQLite: one process, whose own writes need no feed
        stmt = sa.text(
            "SELECT min(xact_start) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE :name"
        )
        oldest: datetime | None = (
            await self._conn.execute(stmt, {"name": f"{APPLICATION_NAME}%"})
        ).scalar()
        return oldest


# --- quality tracks ---------------------------------------------------------------------

_FORGET = sa.literal(FORGET, sa.Float())


def _upsert(table: sa.Table, dialect: str) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say what to do ON CONFLICT, on SQLite or PostgreSQL."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@_statement
def _bump_track(dialect: str, rating: bool) -> sa.Insert:
    """One more completion (or, with `rating`, rating) on an agent's track of a type: the
    earlier ones weigh `FORGET` less (domain.quality.Track.completion/rating), in one
    upsert, so concurrent outcomes of one agent add up rather than overwrite each other."""
    q = agent_quality.c
    trials, hits = (q.rated, q.satisfied) if rating else (q.completed, q.resolved)
    insert = _upsert(agent_quality, dialect)
    first = dict.fromkeys(_TRACK, 0.0) | {trials.name: 1.0, hits.name: _p("hit", sa.Float())}
    stmt = insert.values(
        agent_id=_p("agent_id"),
        interaction_type=_p("interaction_type"),
        updated_at=_p("now"),
        **first,
    )
    return stmt.on_conflict_do_update(
        index_elements=[q.agent_id, q.interaction_type],
        set_={
            trials.name: trials * _FORGET + 1.0,
            hits.name: hits * _FORGET + stmt.excluded[hits.name],
            "updated_at": stmt.excluded.updated_at,
        },
    )


@_statement
def _pool_sums() -> sa.Select[Any]:
    q = agent_quality.c
    return (
        sa.select(q.interaction_type, *(sa.func.sum(q[n]) for n in _TRACK))
        .group_by(q.interaction_type)
        .order_by(q.interaction_type)
    )


@_statement
def _put_pool(dialect: str) -> sa.Insert:
    insert = _upsert(quality_pool, dialect)
    return insert.on_conflict_do_update(
        index_elements=[quality_pool.c.interaction_type],
        set_={n: insert.excluded[n] for n in (*_TRACK, "updated_at")},
    )


class SqlQualityTracks:
    """Agents' and the pool's recent outcomes per interaction type, for ranking."""

    def __init__(self, conn: SqlConnection, now: datetime) -> None:
        self._conn = conn
        self._now = now

    async def _bump(self, agent_id: str, interaction_type: str, hit: bool, rating: bool) -> None:
        stmt = _bump_track(self._conn.dialect.name, rating)
        params = {
            "p_agent_id": agent_id,
            "p_interaction_type": interaction_type,
            "p_hit": 1.0 if hit else 0.0,
            "p_now": self._now,
        }
        await self._conn.execute(stmt, params)

    async def record_completion(self, agent_id: str, interaction_type: str, resolved: bool) -> None:
        await self._bump(agent_id, interaction_type, resolved, rating=False)

    async def record_rating(self, agent_id: str, interaction_type: str, csat: int) -> None:
        await self._bump(agent_id, interaction_type, is_satisfied(csat), rating=True)

    async def refresh_pool(self) -> int:
        stored = {
            t: tuple(values)
            for t, *values in await self._conn.execute(
                sa.select(quality_pool.c.interaction_type, *(quality_pool.c[n] for n in _TRACK))
            )
        }
        rows = [
            {"interaction_type": t, **dict(zip(_TRACK, sums, strict=True)), "updated_at": self._now}
            for t, *sums in await self._conn.execute(_pool_sums())
            if stored.get(t) != tuple(sums)
        ]
        if rows:
            await self._conn.execute(_put_pool(self._conn.dialect.name), rows)
        return len(rows)


# --- pool ---------------------------------------------------------------------------------


@_statement
def _at_risk() -> sa.Select[Any]:
    """Waiting handoffs due by `until`, per type: how many of them are past `now` too
    (ix_handoffs_waiting, by deadline)."""
    h = handoffs.c
    overdue = sa.func.sum(sa.case((h.deadline < _p("now"), 1), else_=0))
    return (
        sa.select(h.interaction_type, overdue, sa.func.count())
        .where(h.state.in_([_const(s) for s in _WAITING]), h.deadline <= _p("until"))
        .group_by(h.interaction_type)
        .order_by(h.interaction_type)
    )


def _risk(stored: str | None) -> RiskClass | None:
    return None if stored is None else RiskClass[stored]


def _skill_names(stored: list[list[Any]]) -> tuple[str, ...]:
    return tuple(r.skill for r in _skills_from(stored))


class SqlPoolQueries:
    """Aggregates for GetPoolStatus and the quality report."""

    def __init__(self, conn: SqlConnection, now: datetime, writer: str = "") -> None:
        self._conn = conn
        self._now = now
        self._writer = writer  # tags what this replica writes, for the others' change feed

    async def snapshot(self) -> PoolSnapshot:
        derived = sa.case(*((agent_state_clause(s), _const(s)) for s in AgentState))
        by_state = dict.fromkeys(AgentState, 0)
        for name, count in await self._conn.execute(
            sa.select(derived, sa.func.count()).where(_LIVE_AGENT).group_by(derived)
        ):
            by_state[AgentState(name)] = int(count)

        online = sa.and_(
            _LIVE_AGENT,
            agents.c.status == _const(AgentStatus.AVAILABLE),
            agents.c.connected == sa.true(),
        )
        free = agents.c.capacity - agents.c.load
        ready = sa.func.sum(sa.case((agents.c.load < agents.c.capacity, 1), else_=0))

        async def capacity(index: sa.Table, key: sa.Column[Any]) -> list[Capacity]:
            stmt = (
                sa.select(key, ready, sa.func.sum(free))
                .select_from(index.join(agents, agents.c.id == index.c.agent_id))
                .where(online)
                .group_by(key)
                .order_by(key)
            )
            return [Capacity(k, int(n), int(f)) for k, n, f in await self._conn.execute(stmt)]

        waiting = handoffs.c.state.in_([_const(s) for s in _WAITING])
        urgency_rows = await self._conn.execute(
            sa.select(handoffs.c.urgency, sa.func.count())
            .where(waiting)
            .group_by(handoffs.c.urgency)
        )
        by_urgency = dict.fromkeys(Urgency, 0)
        for urgency, count in urgency_rows:
            by_urgency[Urgency(urgency)] = int(count)
        type_rows = await self._conn.execute(
            sa.select(handoffs.c.interaction_type, sa.func.count())
            .where(waiting)
            .group_by(handoffs.c.interaction_type)
            .order_by(handoffs.c.interaction_type)
        )
        oldest = (
            await self._conn.execute(
                sa.select(handoffs.c.created_at)
                .where(waiting)
                .order_by(handoffs.c.created_at)
                .limit(1)
            )
        ).scalar()
        by_skill: dict[str, dict[AgentState, int]] = {}
        for skill, name, count in await self._conn.execute(
            sa.select(agent_skills.c.skill, derived, sa.func.count())
            .select_from(agent_skills.join(agents, agents.c.id == agent_skills.c.agent_id))
            .where(_LIVE_AGENT)
            .group_by(agent_skills.c.skill, derived)
            .order_by(agent_skills.c.skill)
        ):
            counts = by_skill.setdefault(skill, dict.fromkeys(AgentState, 0))
            counts[AgentState(name)] = int(count)
        return PoolSnapshot(
            agents_by_state=by_state,
            skills=await capacity(agent_skills, agent_skills.c.skill),
            languages=await capacity(agent_languages, agent_languages.c.language),
            queue_by_urgency=by_urgency,
            queue_by_type={t: int(c) for t, c in type_rows},
            oldest_created_at=oldest,
            agents_by_skill=by_skill,
        )

    async def at_risk(self, horizon: timedelta) -> list[AtRisk]:
        params = {"p_now": self._now, "p_until": self._now + horizon}
        return [
            AtRisk(interaction_type, int(overdue), int(due) - int(overdue))
            for interaction_type, overdue, due in await self._conn.execute(_at_risk(), params)
        ]
